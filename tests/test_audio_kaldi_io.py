"""Kaldi ark/scp features: round trip, scp files from other toolkits, layout helper."""

import os

import kaldiio
import numpy as np
import pytest

from vocoflow.audio import ArkScpWriter, FeatureShapeError, as_frames_by_mels, read_feats, read_scp
from vocoflow.audio.kaldi_io import load_feat


def test_round_trip_own_writer(tmp_path):
    rng = np.random.default_rng(0)
    feats = {f"utt{i}": rng.standard_normal((10 + i, 80)).astype(np.float32) for i in range(5)}
    ark, scp = str(tmp_path / "f.ark"), str(tmp_path / "f.scp")
    with ArkScpWriter(ark, scp) as w:
        for k, v in feats.items():
            w.write(k, v)
    got = dict(read_feats(scp))
    assert list(got) == list(feats)
    for k in feats:
        assert got[k].dtype == np.float32 and np.array_equal(got[k], feats[k])
    # kaldiio itself reads our scp too
    for k, v in kaldiio.load_scp(scp).items():
        assert np.array_equal(v, feats[k])
    assert sorted(os.listdir(tmp_path)) == ["f.ark", "f.scp"]


def test_writer_abort_leaves_nothing(tmp_path):
    ark, scp = str(tmp_path / "f.ark"), str(tmp_path / "f.scp")
    with pytest.raises(RuntimeError):
        with ArkScpWriter(ark, scp) as w:
            w.write("a", np.zeros((2, 3), np.float32))
            raise RuntimeError("interrupted")
    assert os.listdir(tmp_path) == []


def test_audio_in_ark(tmp_path):
    pcm = (np.arange(512) - 256).astype(np.int16)
    with ArkScpWriter(tmp_path / "w.ark", tmp_path / "w.scp") as w:
        w.write("a", (16000, pcm))
    rate, back = kaldiio.load_scp(str(tmp_path / "w.scp"))["a"]
    assert rate == 16000 and np.array_equal(back, pcm)


def test_scp_written_by_another_toolkit(tmp_path, monkeypatch):
    """ESPnet's TTS decoder writes (frames, n_mels) float32 with kaldiio.WriteHelper."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(1)
    feats = {"b": rng.standard_normal((7, 80)).astype(np.float32),
             "a": rng.standard_normal((9, 80)).astype(np.float32)}
    with kaldiio.WriteHelper("ark,scp:feats.ark,feats.scp") as writer:
        for k, v in feats.items():
            writer(k, v)
    got = dict(read_feats("feats.scp", n_mels=80))
    assert set(got) == {"a", "b"} and all(np.array_equal(got[k], feats[k]) for k in feats)
    # ... and from another working directory, the relative ark path is resolved next to the scp
    os.mkdir("elsewhere")
    monkeypatch.chdir("elsewhere")
    got = dict(read_feats("../feats.scp", n_mels=80))
    assert np.array_equal(got["a"], feats["a"])


def test_transposed_features_and_hint(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((80, 12)).astype(np.float32)  # (n_mels, frames)
    kaldiio.save_ark(str(tmp_path / "t.ark"), {"u": x}, scp=str(tmp_path / "t.scp"))
    (k, y), = read_feats(str(tmp_path / "t.scp"), n_mels=80)
    assert y.shape == (12, 80) and np.array_equal(y, x.T)
    with pytest.raises(FeatureShapeError,
                       match=r"t\.scp: utterance u: feature matrix of shape \(80, 12\) has no axis of n_mels=64"):
        list(read_feats(str(tmp_path / "t.scp"), n_mels=64))


def test_as_frames_by_mels():
    assert as_frames_by_mels(np.zeros((5, 80)), 80).shape == (5, 80)
    assert as_frames_by_mels(np.zeros((80, 5)), 80).shape == (5, 80)
    assert as_frames_by_mels(np.zeros((80, 80)), 80).shape == (80, 80)  # Kaldi layout assumed
    with pytest.raises(FeatureShapeError, match="expected a 2-D"):
        as_frames_by_mels(np.zeros(80), 80)
    with pytest.raises(FeatureShapeError, match="no axis of n_mels=80"):
        as_frames_by_mels(np.zeros((5, 81)), 80, "x")


def test_bad_scp_lines(tmp_path):
    p = tmp_path / "x.scp"
    p.write_text("a f.ark:1\nb\n")
    with pytest.raises(ValueError, match=r"x\.scp:2: malformed line"):
        read_scp(p)
    p.write_text("a f.ark:1\na f.ark:2\n")
    with pytest.raises(ValueError, match=r"x\.scp:2: duplicate id 'a' \(first on line 1\)"):
        read_scp(p)
    with pytest.raises(ValueError, match="cannot read features"):
        load_feat(str(tmp_path / "missing.ark") + ":5", 80, name="u")
