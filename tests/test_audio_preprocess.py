"""preprocess over tiny generated data directories (statistics: test_audio_stats.py)."""

import os

import kaldiio
import numpy as np
import pytest
import torch

import vocoflow.audio.dump as pp
import vocoflow.audio.stats as stats_mod
from data_fixtures import make_good_data_dir, tone, write_lines, write_wav
from vocoflow.audio import MelConfig, MelSpectrogram, get_preset, preprocess, read_feats, write_data_dir
from vocoflow.cli.main import main as cli

CFG = get_preset("asterisk16k")


def mixed_data_dir(root):
    """Good utterances plus one of each kind of bad audio."""
    root = str(root)
    wav = {}
    for i in range(3):
        wav[f"good{i}"] = write_wav(f"{root}/wav/good{i}.wav", tone(16000, 0.5 + 0.2 * i, 300 + 100 * i, seed=i))
    wav["good_22k"] = write_wav(f"{root}/wav/good_22k.wav", tone(22050, 0.6, 500), 22050)
    wav["good_pipe"] = f"cat {write_wav(f'{root}/wav/pipe.wav', tone(16000, 0.4, 700))} |"
    open(f"{root}/wav/empty.wav", "wb").close()
    wav["bad_empty"] = f"{root}/wav/empty.wav"
    nan = tone(16000, 0.5)
    nan[10] = np.nan
    wav["bad_nan"] = write_wav(f"{root}/wav/nan.wav", nan, subtype="FLOAT")
    wav["bad_silent"] = write_wav(f"{root}/wav/silent.wav", np.zeros(8000))
    with open(f"{root}/wav/corrupt.wav", "wb") as f:
        f.write(b"RIFF....WAVEfmt garbage" * 10)
    wav["bad_corrupt"] = f"{root}/wav/corrupt.wav"
    wav["bad_missing"] = f"{root}/wav/not_there.wav"
    wav["bad_pipe"] = "false |"
    wav["bad_short"] = write_wav(f"{root}/wav/short.wav", tone(16000, 0.02))
    data = f"{root}/data"
    write_data_dir(data, wav, {k: "s" for k in wav})
    return data


BAD_REASONS = {
    "bad_empty": "empty.wav: empty file",
    "bad_nan": "nan.wav: audio contains NaN",
    "bad_silent": "silent.wav: all-silent audio",
    "bad_corrupt": "corrupt.wav: cannot read audio",
    "bad_missing": "not_there.wav: no such file",
    "bad_pipe": "false |",
    "bad_short": "too short",
}


def test_preprocess_skips_and_lists_bad_files(tmp_path, capsys):
    data = mixed_data_dir(tmp_path)
    dump = str(tmp_path / "dump")
    rc = cli(["preprocess", "--data-dir", data, "--dump-dir", dump, "--feature-preset", "asterisk16k", "--no-progress"])
    assert rc == 0
    err = capsys.readouterr().err
    assert "skipped 7 bad utterance(s)" in err
    bad = dict(line.split("\t", 1) for line in open(f"{dump}/bad_utts").read().splitlines())
    assert set(bad) == set(BAD_REASONS)
    for utt, needle in BAD_REASONS.items():
        assert needle in bad[utt], (utt, bad[utt])
        assert f"  {utt}: " in err
    assert os.path.isfile(f"{dump}/.done")
    feats = dict(read_feats(f"{dump}/feats.scp", n_mels=80))
    assert sorted(feats) == ["good0", "good1", "good2", "good_22k", "good_pipe"]
    assert MelConfig.load(f"{dump}/feats_config.yaml") == CFG
    frames = dict(line.split() for line in open(f"{dump}/utt2num_frames"))
    mel = MelSpectrogram(CFG)
    for utt, value in kaldiio.load_scp(f"{dump}/wav.scp").items():
        rate, pcm = value
        assert rate == 16000 and pcm.dtype == np.int16
        assert len(pcm) == feats[utt].shape[0] * CFG.hop_length == int(frames[utt]) * CFG.hop_length
        # the stored mel is the mel of the stored audio
        again = mel(torch.from_numpy(pcm.astype(np.float32) / 32768)).T.numpy()
        assert np.array_equal(again, feats[utt])
    # 0.6 s at 22.05 kHz resampled to 16 kHz: 9600 samples -> 37 frames
    assert feats["good_22k"].shape[0] == 9600 // 256


def test_strict_mode_refuses_other_rates(tmp_path):
    data = mixed_data_dir(tmp_path)
    res = preprocess(data, tmp_path / "dump", CFG, strict=True)
    reasons = dict(res.bad)
    assert "good_22k.wav: sample rate 22050 Hz, expected 16000 Hz (strict" in reasons["good_22k"]


def test_nothing_usable_exits_nonzero(tmp_path, capsys):
    wav = {"a": write_wav(f"{tmp_path}/a.wav", np.zeros(4000)), "b": f"{tmp_path}/missing.wav"}
    write_data_dir(tmp_path / "data", wav, {k: "s" for k in wav})
    dump = tmp_path / "dump"
    rc = cli(["preprocess", "--data-dir", str(tmp_path / "data"), "--dump-dir", str(dump), "--feature-preset",
              "asterisk16k", "--no-progress"])
    assert rc == 1
    err = capsys.readouterr().err
    assert "no usable utterance" in err and "a.wav: all-silent" in err and "missing.wav: no such file" in err
    assert not dump.exists()  # nothing written


def test_structural_errors_fail_with_file_and_line(tmp_path, capsys):
    data = make_good_data_dir(tmp_path)
    write_lines(f"{data}/utt2spk", ["u0 spk1", "u2 spk1", "u1 spk1", "u3 spk1"])
    rc = cli(["preprocess", "--data-dir", data, "--dump-dir", str(tmp_path / "d"), "--feature-preset", "asterisk16k"])
    assert rc == 1
    assert f"{data}/utt2spk:3: error: ids not sorted" in capsys.readouterr().err


def test_deterministic_and_independent_of_n_jobs(tmp_path):
    data = mixed_data_dir(tmp_path)
    outs = []
    for name, jobs in (("a", 1), ("b", 1), ("c", 2)):
        dump = tmp_path / name
        res = preprocess(data, dump, CFG, n_jobs=jobs)
        assert res.n_ok == 5 and len(res.bad) == 7
        outs.append(dump)
    for other in outs[1:]:
        for f in ("data/feats.ark", "data/wav.ark", "utt2num_frames", "bad_utts", "feats_config.yaml"):
            assert (outs[0] / f).read_bytes() == (other / f).read_bytes(), f


def test_interrupted_rerun_leaves_the_old_dump(tmp_path, monkeypatch):
    data = make_good_data_dir(tmp_path)
    dump = tmp_path / "dump"
    preprocess(data, dump, CFG)
    assert (dump / ".done").exists()
    before = {p: p.read_bytes() for p in dump.rglob("*") if p.is_file()}
    calls = {"n": 0}
    real = pp.process_utterance

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(pp, "process_utterance", flaky)
    with pytest.raises(KeyboardInterrupt):
        preprocess(data, dump, CFG)
    assert {p: p.read_bytes() for p in dump.rglob("*") if p.is_file()} == before  # no leftovers either
    assert sorted(os.listdir(dump)) == [".done", "bad_utts", "data", "feats.scp", "feats_config.yaml",
                                        "utt2num_frames", "wav.scp"]
    assert stats_mod.compute_stats(dump).count > 0  # the old dump is still complete


def test_config_yaml_option(tmp_path):
    data = make_good_data_dir(tmp_path, n=2)
    conf = tmp_path / "feats.yaml"
    conf.write_text("features:\n  preset: asterisk16k\n  n_mels: 40\n  fmax: 7000\n")
    assert cli(["preprocess", "--data-dir", data, "--dump-dir", str(tmp_path / "d"), "--config", str(conf),
                "--no-progress"]) == 0
    cfg = MelConfig.load(tmp_path / "d/feats_config.yaml")
    assert (cfg.n_mels, cfg.fmax, cfg.sample_rate) == (40, 7000.0, 16000)
    assert cli(["preprocess", "--data-dir", data, "--dump-dir", str(tmp_path / "e")]) == 1
    assert cli(["preprocess", "--data-dir", data, "--dump-dir", str(tmp_path / "e"), "--feature-preset", "nope"]) == 1
