"""AudioMelDataset: aligned segments, determinism under a seed, DataLoader workers, collate."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from data_fixtures import tone, write_wav
from vocoflow.audio import AudioMelDataset, compute_stats, get_preset, normalize, preprocess, write_data_dir

CFG = get_preset("asterisk16k")
HOP = CFG.hop_length
SEG = 16 * HOP


@pytest.fixture(scope="module")
def dump(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds")
    wav = {}
    for i, seconds in enumerate([0.9, 1.3, 0.5, 0.2, 1.1, 0.7]):  # 0.2 s = 12 frames < 16
        wav[f"u{i}"] = write_wav(root / f"u{i}.wav", tone(16000, seconds, 200 + 90 * i, seed=i))
    write_data_dir(root / "data", wav, {k: "s" for k in wav})
    raw = root / "raw"
    assert preprocess(root / "data", raw, CFG).n_ok == 6
    compute_stats(raw)
    normalize(raw, raw / "stats.npz", root / "norm")
    return root


def test_segments_are_aligned_slices(dump):
    ds = AudioMelDataset(dump / "raw", SEG, seed=3)
    assert len(ds) == 6
    for i in range(len(ds)):
        item = ds[i]
        audio, mel = ds.load(item["utt_id"])
        assert item["audio"].shape == (SEG,) and item["mel"].shape == (80, SEG // HOP)
        frames = mel.shape[0]
        if frames < SEG // HOP:
            assert item["length"] == len(audio)
            continue
        start = int(ds.rng(i).integers(0, frames - SEG // HOP + 1))
        assert np.array_equal(item["audio"].numpy(), audio[start * HOP : start * HOP + SEG])
        assert np.array_equal(item["mel"].numpy(), mel[start : start + SEG // HOP].T)


def test_deterministic_under_seed_and_epoch(dump):
    a = AudioMelDataset(dump / "raw", SEG, seed=7)
    b = AudioMelDataset(dump / "raw", SEG, seed=7)
    c = AudioMelDataset(dump / "raw", SEG, seed=8)
    same = [torch.equal(a[i]["audio"], b[i]["audio"]) for i in range(len(a))]
    assert all(same)
    assert any(not torch.equal(a[i]["audio"], c[i]["audio"]) for i in range(len(a)))
    first = [a[i]["audio"] for i in range(len(a))]
    a.set_epoch(1)
    assert any(not torch.equal(first[i], a[i]["audio"]) for i in range(len(a)))
    a.set_epoch(0)
    assert all(torch.equal(first[i], a[i]["audio"]) for i in range(len(a)))
    # order of access does not matter
    assert all(torch.equal(first[i], a[i]["audio"]) for i in reversed(range(len(a))))


def _epoch_batches(ds, workers, epoch):
    ds.set_epoch(epoch)
    loader = DataLoader(ds, batch_size=2, shuffle=True, num_workers=workers,
                        generator=torch.Generator().manual_seed(epoch))
    return [(b["utt_id"], b["audio"], b["mel"]) for b in loader]


def test_same_batches_with_0_and_2_workers(dump):
    ds = AudioMelDataset(dump / "raw", SEG, seed=11)
    for epoch in (0, 1):
        ref = _epoch_batches(ds, 0, epoch)
        got = _epoch_batches(ds, 2, epoch)
        assert len(ref) == len(got) == 3
        for (u0, a0, m0), (u1, a1, m1) in zip(ref, got):
            assert list(u0) == list(u1) and torch.equal(a0, a1) and torch.equal(m0, m1)


def test_short_utterances_pad_or_skip(dump):
    skip = AudioMelDataset(dump / "raw", SEG, short="skip")
    assert "u3" not in skip.utt_ids and len(skip) == 5
    pad = AudioMelDataset(dump / "raw", SEG, short="pad")
    item = pad[pad.utt_ids.index("u3")]
    n = item["length"]
    assert n == 12 * HOP
    assert torch.all(item["audio"][n:] == 0)
    assert torch.allclose(item["mel"][:, 12:], torch.full((80, 4), CFG.log_floor, dtype=torch.float32))
    norm = AudioMelDataset(dump / "norm", SEG, short="pad")
    item = norm[norm.utt_ids.index("u3")]
    expect = torch.from_numpy(norm.pad_value)[:, None].expand(80, 4)
    assert torch.allclose(item["mel"][:, 12:], expect)
    with pytest.raises(ValueError, match="multiple of hop_length"):
        AudioMelDataset(dump / "raw", SEG + 1)


def test_eval_mode_and_collate(dump):
    ds = AudioMelDataset(dump / "norm")
    loader = DataLoader(ds, batch_size=3, collate_fn=ds.collate, num_workers=0)
    batch = next(iter(loader))
    lengths, mel_lengths = batch["lengths"], batch["mel_lengths"]
    assert torch.equal(lengths, mel_lengths * HOP)
    assert batch["audio"].shape == (3, int(lengths.max()))
    assert batch["mel"].shape == (3, 80, int(mel_lengths.max()))
    for i, utt in enumerate(batch["utt_id"]):
        audio, mel = ds.load(utt)
        n, f = len(audio), mel.shape[0]
        assert np.array_equal(batch["audio"][i, :n].numpy(), audio)
        assert np.array_equal(batch["mel"][i, :, :f].numpy(), mel.T)
        assert torch.all(batch["audio"][i, n:] == 0)
        assert torch.allclose(batch["mel"][i, :, f:],
                              torch.from_numpy(ds.pad_value)[:, None].expand(80, batch["mel"].shape[2] - f))


def test_incomplete_dump_is_refused(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(ValueError, match="incomplete dump"):
        AudioMelDataset(tmp_path / "d")
