"""Data preparation of the ljspeech, vctk and libritts recipes on tiny fake corpora."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EGS = os.path.join(ROOT, "egs")


def _sine(path, rate, seconds=0.2, fmt=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    t = np.arange(int(rate * seconds)) / rate
    sf.write(path, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate, subtype="PCM_16", format=fmt)


def _env():
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return env


def _prep(recipe, *args):
    cwd = os.path.join(EGS, recipe, "voc1")
    r = subprocess.run(["bash", "local/data_prep.sh", *map(str, args)], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def _read(path):
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n").split(" ", 1) for line in f if line.strip()]


def _check(data, utt_to_spk_prefix=True):
    ids = {}
    for name in ("train", "dev", "eval"):
        d = data / name
        for f in ("wav.scp", "utt2spk", "spk2utt", "text"):
            assert (d / f).is_file(), d / f
        keys = [k for k, _ in _read(d / "wav.scp")]
        assert keys == sorted(keys, key=str.encode)
        u2s = dict(_read(d / "utt2spk"))
        assert set(u2s) == set(keys)
        if utt_to_spk_prefix:
            assert all(u.startswith(s) for u, s in u2s.items())
        ids[name] = set(keys)
    assert not (ids["train"] & ids["dev"]) and not (ids["train"] & ids["eval"]) and not (ids["dev"] & ids["eval"])
    # local/data_prep.sh ends with `python -m vocoflow.cli validate-data-dir` on the three
    # directories, so its exit status 0 (checked by _prep) already covers validation.
    return ids


def test_ljspeech(tmp_path):
    corpus = tmp_path / "dl" / "LJSpeech-1.1"
    ids = [f"LJ001-{i:04d}" for i in range(1, 206)]
    lines = []
    for u in ids:
        _sine(str(corpus / "wavs" / f"{u}.wav"), 22050, 0.05)
        lines.append(f"{u}|Raw text {u}.|Normalized text {u}.")
    (corpus / "metadata.csv").write_text("\n".join(reversed(lines)) + "\n", encoding="utf-8")
    _prep("ljspeech", tmp_path / "dl", tmp_path / "data")
    got = _check(tmp_path / "data")
    assert got["eval"] == set(ids[-100:])
    assert got["dev"] == set(ids[-200:-100])
    assert got["train"] == set(ids[:5])
    text = dict(_read(tmp_path / "data" / "train" / "text"))
    assert text["LJ001-0001"] == "Normalized text LJ001-0001."


def test_vctk(tmp_path):
    corpus = tmp_path / "dl" / "VCTK-Corpus-0.92"
    spks = {"p225": 6, "p226": 7, "p315": 5}
    for spk, n in spks.items():
        for i in range(1, n + 1):
            utt = f"{spk}_{i:03d}"
            for mic in ("mic1", "mic2"):
                _sine(str(corpus / "wav48_silence_trimmed" / spk / f"{utt}_{mic}.flac"), 48000, 0.05, fmt="FLAC")
            if spk != "p315":
                (corpus / "txt" / spk).mkdir(parents=True, exist_ok=True)
                (corpus / "txt" / spk / f"{utt}.txt").write_text(f"Please call {utt}.\n", encoding="utf-8")
    _prep("vctk", tmp_path / "dl", tmp_path / "data")
    got = _check(tmp_path / "data")
    assert got["eval"] == {"p225_005", "p225_006", "p226_006", "p226_007"}
    assert got["dev"] == {"p225_003", "p225_004", "p226_004", "p226_005"}
    assert got["train"] == {"p225_001", "p225_002", "p226_001", "p226_002", "p226_003"}
    wav = dict(_read(tmp_path / "data" / "train" / "wav.scp"))
    assert all(v.endswith("_mic1.flac") for v in wav.values())


def test_libritts(tmp_path):
    root = tmp_path / "dl" / "LibriTTS"
    layout = {"train-clean-100": {"19": ["198"], "26": ["495"]}, "dev-clean": {"84": ["121123"]}, "test-clean": {"121": ["121726"]}}
    expected = {}
    for subset, spks in layout.items():
        expected[subset] = set()
        for spk, chapters in spks.items():
            for ch in chapters:
                for k in range(2):
                    stem = f"{spk}_{ch}_000000_00000{k}"
                    d = root / subset / spk / ch
                    _sine(str(d / f"{stem}.wav"), 24000, 0.05)
                    (d / f"{stem}.normalized.txt").write_text(f"Text of {stem}.", encoding="utf-8")
                    (d / f"{stem}.original.txt").write_text(f"text of {stem}", encoding="utf-8")
                    expected[subset].add(stem)
    _prep("libritts", tmp_path / "dl", tmp_path / "data")
    got = _check(tmp_path / "data")
    assert got["train"] == expected["train-clean-100"]
    assert got["dev"] == expected["dev-clean"]
    assert got["eval"] == expected["test-clean"]
    # the subsets are arguments 3..5
    _prep("libritts", tmp_path / "dl", tmp_path / "data2", "dev-clean", "test-clean", "train-clean-100")
    got = _check(tmp_path / "data2")
    assert got["eval"] == expected["train-clean-100"]


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_shellcheck():
    files = []
    for recipe in ("ljspeech", "vctk", "libritts"):
        d = os.path.join(EGS, recipe, "voc1")
        files += [os.path.join(d, f) for f in ("run.sh", "path.sh", "cmd.sh")]
        files += [os.path.join(d, "local", f) for f in sorted(os.listdir(os.path.join(d, "local"))) if f.endswith(".sh")]
    for f in files:
        r = subprocess.run(["shellcheck", "-x", os.path.basename(f)], cwd=os.path.dirname(f), capture_output=True, text=True)
        assert r.returncode == 0, f + "\n" + r.stdout + r.stderr
