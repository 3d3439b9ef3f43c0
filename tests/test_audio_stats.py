"""Feature statistics: compute-stats / normalize over a tiny dump, the merge rule, stats.npz I/O."""

import os

import numpy as np
import pytest

from data_fixtures import make_good_data_dir
from vocoflow.audio import Stats, get_preset, preprocess, read_feats
from vocoflow.audio.stats import StatsError
from vocoflow.cli.main import main as cli

CFG = get_preset("asterisk16k")


def test_compute_stats_and_normalize(tmp_path, capsys):
    data = make_good_data_dir(tmp_path)
    raw, norm = str(tmp_path / "raw"), str(tmp_path / "norm")
    preprocess(data, raw, CFG)
    assert cli(["compute-stats", "--dump-dir", raw, "--no-progress"]) == 0
    stats = Stats.load(f"{raw}/stats.npz")
    allf = np.concatenate([f for _, f in read_feats(f"{raw}/feats.scp")]).astype(np.float64)
    assert stats.count == len(allf)
    assert np.allclose(stats.mean, allf.mean(0)) and np.allclose(stats.scale, allf.std(0))
    assert cli(["normalize", "--dump-dir", raw, "--stats", f"{raw}/stats.npz", "--out-dir", norm, "--no-progress"]) == 0
    normed = np.concatenate([f for _, f in read_feats(f"{norm}/feats.scp")]).astype(np.float64)
    assert np.allclose(normed.mean(0), 0, atol=1e-4) and np.allclose(normed.std(0), 1, atol=1e-3)
    assert open(f"{norm}/wav.scp").read() == open(f"{raw}/wav.scp").read()
    assert open(f"{norm}/utt2num_frames").read() == open(f"{raw}/utt2num_frames").read()
    assert os.path.isfile(f"{norm}/.done") and os.path.isfile(f"{norm}/norm_stats.npz")
    assert cli(["normalize", "--dump-dir", raw, "--stats", f"{raw}/stats.npz", "--out-dir", raw]) == 1


def test_stats_merge_matches_numpy():
    rng = np.random.default_rng(0)
    parts = [rng.normal(5, 3, size=(n, 4)) for n in (1, 7, 100, 3)]
    s = Stats.from_features(parts)
    allx = np.concatenate(parts)
    assert np.allclose(s.mean, allx.mean(0)) and np.allclose(s.scale, allx.std(0))
    const = Stats.from_features([np.ones((5, 2))])
    assert const.scale.tolist() == [1.0, 1.0]


def test_stats_save_load_round_trip(tmp_path):
    s = Stats(np.array([1.0, -2.0]), np.array([0.5, 3.0]), 7)
    s.save(tmp_path / "stats.npz")
    back = Stats.load(tmp_path / "stats.npz")
    assert back.mean.tolist() == [1.0, -2.0] and back.scale.tolist() == [0.5, 3.0] and back.count == 7
    assert os.listdir(tmp_path) == ["stats.npz"]


def test_stats_load_errors_name_the_file(tmp_path):
    missing = tmp_path / "none.npz"
    with pytest.raises(FileNotFoundError, match="none.npz"):
        Stats.load(missing)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file at all")
    with pytest.raises(StatsError, match=r"garbage\.npz: cannot read statistics"):
        Stats.load(garbage)
    np.savez(tmp_path / "other.npz", foo=np.zeros(3))
    with pytest.raises(ValueError, match=r"other\.npz: not a stats file \(missing mean, scale\)"):
        Stats.load(tmp_path / "other.npz")
    np.save(tmp_path / "plain.npy", np.zeros(3))
    with pytest.raises(StatsError, match=r"plain\.npy: not a stats file"):
        Stats.load(tmp_path / "plain.npy")
    np.savez(tmp_path / "shape.npz", mean=np.zeros(3), scale=np.ones(4))
    with pytest.raises(StatsError, match=r"shape\.npz: mean and scale"):
        Stats.load(tmp_path / "shape.npz")
    np.savez(tmp_path / "zero.npz", mean=np.zeros(3), scale=np.zeros(3))
    with pytest.raises(StatsError, match=r"zero\.npz: .*not positive"):
        Stats.load(tmp_path / "zero.npz")
