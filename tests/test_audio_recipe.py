"""egs/asterisk_en/voc1: data preparation on a fake corpus, fixed dev/eval lists, shell lint.

The real corpus is not needed (see the recipe's run.sh for that)."""

import importlib.util
import os
import shutil
import subprocess

import numpy as np
import pytest

from data_fixtures import tone, write_lines, write_wav
from vocoflow.audio import DataDir

RECIPE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "egs", "asterisk_en", "voc1")


def load_data_prep():
    spec = importlib.util.spec_from_file_location("asterisk_data_prep", os.path.join(RECIPE, "local", "data_prep.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def read_list(name):
    with open(os.path.join(RECIPE, "local", name)) as f:
        return [line.strip() for line in f if line.strip() and not line.startswith("#")]


def test_committed_lists_are_fixed_and_disjoint():
    dev, evl = read_list("dev_list.txt"), read_list("eval_list.txt")
    assert len(dev) == 12 and len(evl) == 24
    assert len(set(dev)) == 12 and len(set(evl)) == 24 and not set(dev) & set(evl)
    assert dev == sorted(dev) and evl == sorted(evl)


def test_data_prep_on_fake_corpus(tmp_path):
    dp = load_data_prep()
    wav = tmp_path / "wav"
    prompts = {
        "agent-pass": "Please enter your password followed by the pound key.",
        "auth-thankyou": "Thank you.",
        "conf-full": "That conference is full.",
        "vm-next": "Press 6 for the next message.",
        "beep": "[this is a simple beep tone]",
        "tone-x": "something",
        "ascending-2tone": "[ascending tones]",
        "letters/at": "at [@]",
        "digits/1": "one",
        "no-transcript": None,
    }
    for i, p in enumerate(list(prompts) + ["silence/1"]):
        write_wav(wav / f"{p}.wav", tone(16000, 0.3, 300 + 20 * i, seed=i))
    write_lines(tmp_path / "core-sounds-en.txt",
                ["; Core Asterisk Sounds in English", ""] + [f"{k}: {v}" for k, v in prompts.items() if v is not None])
    write_lines(tmp_path / "dev.txt", ["# dev", "conf-full"])
    write_lines(tmp_path / "eval.txt", ["vm-next", "not-in-corpus"])
    rc = dp.main([str(wav), str(tmp_path / "core-sounds-en.txt"), str(tmp_path / "data"),
                  "--dev-list", str(tmp_path / "dev.txt"), "--eval-list", str(tmp_path / "eval.txt")])
    assert rc == 0
    sets = {}
    for name in ("train", "dev", "eval"):
        dd = DataDir(tmp_path / "data" / name).check()
        assert dd.issues == []
        sets[name] = {u.utt_id: u.text for u in dd.utterances()}
    assert sets["dev"] == {"allison_conf-full": "That conference is full."}
    assert sets["eval"] == {"allison_vm-next": "Press 6 for the next message."}
    assert sets["train"] == {
        "allison_agent-pass": "Please enter your password followed by the pound key.",
        "allison_auth-thankyou": "Thank you.",
        "allison_digits-1": "one",
        "allison_letters-at": "at",
    }


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_shell_scripts_pass_shellcheck():
    scripts = ["run.sh", "path.sh", "local/data_download.sh", "local/data_prep.sh"]
    proc = subprocess.run(["shellcheck", "-x", *scripts], cwd=RECIPE, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_run_sh_help():
    proc = subprocess.run(["bash", os.path.join(RECIPE, "run.sh"), "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "--stop-stage" in proc.stdout
    proc = subprocess.run(["bash", os.path.join(RECIPE, "run.sh"), "--bogus"], capture_output=True, text=True)
    assert proc.returncode == 1


@pytest.mark.corpus
def test_corpus_outputs_if_present():
    """With the corpus prepared (run.sh --stage -1 --stop-stage 2), check its sizes."""
    raw = os.path.join(RECIPE, "dump", "train", "raw")
    if not os.path.isfile(os.path.join(raw, ".done")):
        pytest.skip("corpus not prepared")
    frames = {}
    for name in ("train", "dev", "eval"):
        with open(os.path.join(RECIPE, "dump", name, "raw", "utt2num_frames")) as f:
            frames[name] = dict(line.split() for line in f)
    assert not set(frames["train"]) & (set(frames["dev"]) | set(frames["eval"]))
    minutes = sum(int(v) for v in frames["train"].values()) * 256 / 16000 / 60
    assert minutes >= 20
    assert np.isfinite(minutes)
