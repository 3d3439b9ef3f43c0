"""``vocoflow decode`` end to end on a tiny saved (untrained) vocoder."""

from __future__ import annotations

import importlib
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from flowcheck import randomize
from vocoflow.audio.io import save_wav
from vocoflow.audio.kaldi_io import ArkScpWriter
from vocoflow.vocoders import build_model, load, load_config, save_vocoder

cli_main = importlib.import_module("vocoflow.cli.main")
CONFIGS = Path(__file__).resolve().parent.parent / "configs"
MEAN, SCALE = -6.0, 2.0


@pytest.fixture(autouse=True)
def _decode_registered(monkeypatch):
    if "vocoflow.cli.decode" not in cli_main.COMMAND_MODULES:
        monkeypatch.setattr(cli_main, "COMMAND_MODULES",
                            cli_main.COMMAND_MODULES + ["vocoflow.cli.decode"])


def run(*argv):
    return cli_main.main(["decode", "--no-progress", *map(str, argv)])


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    cfg = load_config(CONFIGS / "waveglow_debug.yaml")
    torch.manual_seed(0)
    model = randomize(build_model(cfg), std=0.05)
    stats = {"mean": np.full(80, MEAN), "scale": np.full(80, SCALE)}
    return save_vocoder(model, cfg, tmp_path_factory.mktemp("m") / "voc", stats=stats)


def raw(frames, seed):
    g = np.random.default_rng(seed)
    return np.maximum(MEAN + SCALE * g.standard_normal((80, frames)), math.log(1e-5)).astype(np.float32)


def _wav_len(path):
    info = sf.info(str(path))
    assert info.samplerate == 16000 and info.subtype == "PCM_16"
    return info.frames


def test_npy_dir_with_bad_files(tmp_path, model_dir, capsys):
    src = tmp_path / "npy"
    src.mkdir()
    np.save(src / "a.npy", raw(7, 1))                 # (n_mels, frames)
    np.save(src / "b.npy", raw(5, 2).T.copy())        # (frames, n_mels)
    np.save(src / "c.npy", raw(9, 3))
    np.save(src / "wrongbins.npy", np.zeros((40, 6), np.float32))
    (src / "garbage.npy").write_bytes(b"not numpy")
    nan = raw(6, 4)
    nan[0, 0] = np.nan
    np.save(src / "nan.npy", nan)
    out = tmp_path / "out"
    assert run("--model", model_dir, "--out-dir", out, "--npy-dir", src, "--batch-size", 2) == 2
    assert sorted(p.name for p in out.glob("*.wav")) == ["a.wav", "b.wav", "c.wav"]
    assert [_wav_len(out / f"{u}.wav") for u in "abc"] == [7 * 256, 5 * 256, 9 * 256]
    err = capsys.readouterr().err
    assert "3 of 6 utterance(s) failed" in err
    bad = dict(line.split(" ", 1) for line in (out / "bad_utts").read_text().splitlines())
    assert set(bad) == {"wrongbins", "garbage", "nan"}
    assert "n_mels=80" in bad["wrongbins"] and "NaN" in bad["nan"] and "cannot read" in bad["garbage"]
    assert not list(out.glob(".*"))  # atomic writes left no temporary files


def test_feats_scp_and_seed_determinism(tmp_path, model_dir):
    d = tmp_path / "dump"
    d.mkdir()
    with ArkScpWriter(d / "feats.ark", d / "feats.scp") as w:
        w.write("u1", raw(6, 5).T)       # Kaldi layout (frames, n_mels)
        w.write("u2", raw(4, 6).T)
    with open(d / "feats.scp", "a") as f:
        f.write(f"u3 {d / 'missing.ark'}:15\n")
    outs = []
    for k in range(2):
        out = tmp_path / f"out{k}"
        assert run("--model", model_dir, "--out-dir", out, "--feats-scp", d / "feats.scp",
                   "--seed", 3) == 2
        outs.append(out)
        assert "u3" in (out / "bad_utts").read_text()
    a, _ = sf.read(outs[0] / "u1.wav", dtype="int16")
    b, _ = sf.read(outs[1] / "u1.wav", dtype="int16")
    assert len(a) == 6 * 256 and np.array_equal(a, b)


def test_wav_dir_analysis_resynthesis(tmp_path, model_dir):
    src = tmp_path / "wavs"
    src.mkdir()
    t = np.arange(16000) / 16000
    save_wav(src / "tone.wav", 0.3 * np.sin(2 * np.pi * 300 * t), 16000)
    save_wav(src / "short.wav", 0.2 * np.sin(2 * np.pi * 500 * t[:3000]), 16000)
    save_wav(src / "silent.wav", np.zeros(4000), 16000)
    (src / "broken.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    out = tmp_path / "out"
    # analysis features are raw by construction; normalisation comes from the model's stats
    assert run("--model", model_dir, "--out-dir", out, "--wav-dir", src) == 2
    assert _wav_len(out / "tone.wav") == 16000 // 256 * 256
    assert _wav_len(out / "short.wav") == 3000 // 256 * 256
    bad = (out / "bad_utts").read_text()
    assert "silent" in bad and "broken" in bad


def test_wav_scp_all_good_exits_zero(tmp_path, model_dir, capsys):
    wav = tmp_path / "x.wav"
    t = np.arange(8000) / 16000
    save_wav(wav, 0.3 * np.sin(2 * np.pi * 200 * t), 16000)
    scp = tmp_path / "wav.scp"
    scp.write_text(f"x {wav}\n")
    out = tmp_path / "out"
    assert run("--model", model_dir, "--out-dir", out, "--wav-scp", scp, "--no-check",
               "--denoise", 0.05, "--chunk-frames", 8, "--sigma", 0.3) == 0
    assert _wav_len(out / "x.wav") == 8000 // 256 * 256
    assert not (out / "bad_utts").exists()
    assert "wrote 1 waveform" in capsys.readouterr().out


def test_normalisation_flags(tmp_path, model_dir, capsys):
    src = tmp_path / "npy"
    src.mkdir()
    np.save(src / "n.npy", (raw(8, 7) - MEAN) / SCALE)  # already normalised
    out = tmp_path / "out"
    # default: raw expected -> the mismatch is reported and nothing is produced
    assert run("--model", model_dir, "--out-dir", out, "--npy-dir", src) == 1
    err = capsys.readouterr().err
    assert "looks already normalised" in err and "nothing was produced" in err
    assert run("--model", model_dir, "--out-dir", out, "--npy-dir", src, "--no-normalize") == 0
    assert (out / "n.wav").exists()
    # a raw (no statistics) vocoder cannot normalise
    cfg = load_config(CONFIGS / "waveglow_debug.yaml")
    raw_dir = save_vocoder(build_model(cfg), cfg, tmp_path / "rawvoc")
    assert not load(raw_dir).normalize
    assert run("--model", raw_dir, "--out-dir", out, "--npy-dir", src, "--normalize-before") == 1
    assert "trained on raw features" in capsys.readouterr().err


def test_usage_errors(tmp_path, model_dir, capsys):
    assert run("--model", tmp_path, "--out-dir", tmp_path / "o", "--npy-dir", tmp_path) == 1
    assert "no config.yaml" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run("--model", model_dir, "--out-dir", tmp_path / "o", "--npy-dir", empty) == 1
    assert "no utterances" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # exactly one input
        run("--model", model_dir, "--out-dir", tmp_path / "o")
