"""``vocoflow benchmark`` (and benchmarks/bench_vocoder.py) on the debug config."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

from vocoflow.cli.bench import KEYS, format_table

ROOT = Path(__file__).resolve().parent.parent
cli_main = importlib.import_module("vocoflow.cli.main")


def test_benchmark_cli_writes_json(tmp_path, capsys, monkeypatch):
    if "vocoflow.cli.bench" not in cli_main.COMMAND_MODULES:  # pragma: no cover
        monkeypatch.setattr(cli_main, "COMMAND_MODULES", cli_main.COMMAND_MODULES + ["vocoflow.cli.bench"])
    out = tmp_path / "b.json"
    rc = cli_main.main(["benchmark", str(ROOT / "configs" / "waveglow_debug.yaml"), "--threads", "1",
                        "--seconds", "0.5", "--bf16", "--matmul-size", "256", "--chunk-frames", "16", "--json",
                        str(out)])
    assert rc == 0
    r = json.loads(out.read_text())
    assert set(KEYS) <= set(r)
    assert r["samples"] == 32 * 256 and r["threads"] == 1 and r["bf16"] is True
    assert r["rtf"] > 0 and r["achieved_gmacs"] > 0 and r["matmul_fp32_gmacs"] > 0
    assert r["matmul_bf16_gmacs"] > 0 and r["peak_rss_mb"] > 0
    assert r["fraction_of_matmul"] == r["achieved_gmacs"] / r["matmul_bf16_gmacs"]
    assert {"bf16_speedup", "snr_bf16_vs_fp32_db", "fp32_wall_s"} <= set(r)
    printed = capsys.readouterr().out
    assert "real-time factor" in printed and "fraction of bf16 matmul" in printed
    assert format_table(r) in printed


def test_benchmark_errors_and_script(tmp_path, capsys):
    assert cli_main.main(["benchmark", str(tmp_path / "nope.yaml")]) == 1
    assert "no such config" in capsys.readouterr().err
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_vocoder.py"), "--help"],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "--chunk-frames" in proc.stdout and "getrusage" in proc.stdout
