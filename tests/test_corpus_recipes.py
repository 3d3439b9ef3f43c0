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
    r = subprocess.run(["bash", "local/data_prep.sh", *map(str, args)], cwd=cwd, env=_env(), capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    # what stage 0 of recipes/voc1/voc.sh runs next on the three directories
    data = args[1] if len(args) > 1 else os.path.join(cwd, "data")
    dirs = [os.path.join(str(data), s) for s in ("train", "dev", "eval")]
    r = subprocess.run([sys.executable, "-m", "vocoflow.cli", "validate-data-dir", *dirs], env=_env(),
                       capture_output=True, text=True, timeout=60)
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
    # _prep already ran `vocoflow validate-data-dir` on the three directories, as stage 0 does.
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
    layout = {"train-clean-100": {"19": ["198"], "26": ["495"]}, "dev-clean": {"84": ["121123"]},
              "test-clean": {"121": ["121726"]}}
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
        files += [os.path.join(d, "local", f)
                  for f in sorted(os.listdir(os.path.join(d, "local"))) if f.endswith(".sh")]
    for f in files:
        r = subprocess.run(["shellcheck", "-x", os.path.basename(f)], cwd=os.path.dirname(f), capture_output=True,
                           text=True)
        assert r.returncode == 0, f + "\n" + r.stdout + r.stderr


def _substitute(*args):
    script = os.path.join(ROOT, "recipes", "utils", "substitute_corpus.py")
    return subprocess.run([sys.executable, script, *map(str, args)], env=_env(), capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("layout,rate", [("ljspeech", 22050), ("vctk", 48000), ("libritts", 24000)])
def test_substitute_corpus_feeds_the_recipe_data_prep(tmp_path, layout, rate):
    """recipes/utils/substitute_corpus.py writes real audio in each corpus's layout, at its
    rate, and the recipe's own data prep accepts the tree (splits as the recipe defines them)."""
    from data_fixtures import make_good_data_dir

    n = {"ljspeech": 205, "vctk": 15, "libritts": 3}[layout]
    dirs = [make_good_data_dir(tmp_path / f"src{i}", n=n if layout != "libritts" else 2,
                               seconds=0.05) for i in range(3 if layout == "libritts" else 1)]
    r = _substitute("--layout", layout, "--speakers", "3", *dirs, tmp_path / "dl")
    assert r.returncode == 0, r.stdout + r.stderr
    _prep(layout, tmp_path / "dl", tmp_path / "data")
    got = _check(tmp_path / "data")
    wav = dict(_read(tmp_path / "data" / "eval" / "wav.scp"))
    info = sf.info(next(iter(wav.values())))
    assert info.samplerate == rate
    if layout == "ljspeech":
        assert len(got["eval"]) == 100 and len(got["dev"]) == 100 and len(got["train"]) == 5
    elif layout == "vctk":
        assert info.format == "FLAC"
        assert len(got["eval"]) == 6 and len(got["dev"]) == 6 and len(got["train"]) == 3
    else:
        assert len(got["train"]) == len(got["dev"]) == len(got["eval"]) == 2
    text = dict(_read(tmp_path / "data" / "eval" / "text"))
    assert all(t.startswith("utterance") for t in text.values())


def test_substitute_corpus_names_a_bad_source(tmp_path):
    from data_fixtures import make_good_data_dir

    src = make_good_data_dir(tmp_path / "src", n=2)
    os.remove(os.path.join(tmp_path, "src", "wav", "u1.wav"))
    r = _substitute("--layout", "ljspeech", src, tmp_path / "dl")
    assert r.returncode == 1 and "u1.wav" in r.stderr, r.stderr
    assert not os.path.exists(tmp_path / "dl" / "LJSpeech-1.1" / "metadata.csv")


def _recipe_configs():
    out = []
    for corpus in sorted(os.listdir(EGS)):
        conf = os.path.join(EGS, corpus, "voc1", "conf")
        if os.path.isdir(conf):
            out += [os.path.join(conf, f) for f in sorted(os.listdir(conf))
                    if f.endswith(".yaml") and f != "features.yaml"]
    return out


@pytest.mark.parametrize("path", _recipe_configs(), ids=lambda p: os.path.relpath(p, EGS))
def test_recipe_configs_build_and_agree_with_the_front_end(path):
    """Every model config of every voc1 recipe builds, uses the recipe's own front end
    (conf/features.yaml, which stage 1 extracts with), has segments that are whole frames, and
    (WaveGlow) inverts exactly on a few frames."""
    import torch

    from vocoflow.audio.mel import MelConfig
    from vocoflow.vocoders import build_model, features_from_config, load_config

    cfg = load_config(path)
    front = MelConfig.load(os.path.join(os.path.dirname(path), "features.yaml"))
    assert features_from_config(cfg) == front, path
    seg = cfg["train"].get("segment_length")
    if seg is not None:
        assert seg % front.hop_length == 0, (path, seg, front.hop_length)
    if cfg["model"]["type"] != "waveglow":
        return
    torch.manual_seed(0)
    model = randomize_model(build_model(cfg).double())
    assert front.hop_length % model.config.n_group == 0
    frames = 2
    mel = torch.randn(1, front.n_mels, frames, dtype=torch.float64)
    audio = 0.1 * torch.randn(1, frames * front.hop_length, dtype=torch.float64)
    with torch.no_grad():
        z, _ = model(audio, mel)
        ls = model.prior_log_scale(mel)  # a data-dependent prior scales the unit noise
        back = model.infer(mel, sigma=1.0, noise=z if ls is None else z / torch.exp(ls))
    assert torch.allclose(back, audio, atol=1e-9), (back - audio).abs().max()


def randomize_model(model):
    from flowcheck import randomize

    return randomize(model, std=0.02)
