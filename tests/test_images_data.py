"""Image data: IDX and CIFAR-10 readers (and their errors), digits, prepared directories, the
per-pixel categorical baseline and the PNG writer."""

from __future__ import annotations

import gzip
import math
import pickle
import struct

import numpy as np
import pytest
import torch

from vocoflow.images import (
    CategoricalBaseline,
    ImageDataError,
    categorical_baseline_bpd,
    load_cifar10,
    load_digits,
    load_idx_split,
    load_prepared,
    make_grid,
    read_idx,
    save_prepared,
    write_png,
)
from vocoflow.images.png import read_png_size

pytestmark = pytest.mark.usefixtures("one_torch_thread")



def _idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write_idx_set(directory, n_train=5, n_test=3, size=(28, 28), gz=True):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        imgs = _idx_bytes(rng.integers(0, 256, (n, *size)))
        labs = _idx_bytes(rng.integers(0, 10, (n,)))
        for stem, data in ((f"{prefix}-images-idx3-ubyte", imgs), (f"{prefix}-labels-idx1-ubyte", labs)):
            if gz:
                (directory / f"{stem}.gz").write_bytes(gzip.compress(data))
            else:
                (directory / stem).write_bytes(data)


@pytest.mark.parametrize("gz", [True, False])
def test_idx_split_round_trip(tmp_path, gz):
    _write_idx_set(tmp_path, gz=gz)
    images, labels = load_idx_split(tmp_path, "train")
    assert images.shape == (5, 1, 28, 28) and images.dtype == torch.uint8
    assert labels.shape == (5,) and labels.dtype == torch.long
    assert load_idx_split(tmp_path, "test")[0].shape == (3, 1, 28, 28)


def test_idx_multibyte_big_endian(tmp_path):
    p = tmp_path / "x-idx1-int"
    p.write_bytes(bytes([0, 0, 0x0C, 1]) + struct.pack(">I", 2) + struct.pack(">2i", 7, -300000))
    assert read_idx(p).tolist() == [7, -300000]


def test_idx_missing_file_names_it(tmp_path):
    _write_idx_set(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(ImageDataError, match="t10k-labels-idx1-ubyte"):
        load_idx_split(tmp_path, "test")


@pytest.mark.parametrize("gz", [True, False])
def test_idx_truncated_file(tmp_path, gz):
    _write_idx_set(tmp_path, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    data = path.read_bytes()[:-100]
    if gz:
        path.unlink()
        path = tmp_path / "train-images-idx3-ubyte.gz"
        data = gzip.compress(data)
    path.write_bytes(data)
    with pytest.raises(ImageDataError, match=r"train-images-idx3-ubyte.*truncated"):
        load_idx_split(tmp_path, "train")


def test_idx_truncated_gzip_stream(tmp_path):
    p = tmp_path / "a.gz"
    p.write_bytes(gzip.compress(_idx_bytes(np.zeros((4, 2, 2))))[:-12])
    with pytest.raises(ImageDataError, match="a.gz.*(truncated|corrupt)"):
        read_idx(p)


def test_idx_wrong_magic(tmp_path):
    p = tmp_path / "bad-idx3-ubyte"
    p.write_bytes(b"\x08\x03\x00\x00" + bytes(20))
    with pytest.raises(ImageDataError, match="bad-idx3-ubyte.*magic"):
        read_idx(p)


def test_idx_wrong_shape_and_label_count(tmp_path):
    _write_idx_set(tmp_path, size=(27, 28))
    with pytest.raises(ImageDataError, match=r"train-images.*\(N, 28, 28\)"):
        load_idx_split(tmp_path, "train")
    _write_idx_set(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(np.zeros(4))))
    with pytest.raises(ImageDataError, match="4 labels for 5 images"):
        load_idx_split(tmp_path, "train")


def _write_cifar(directory, n=4):
    sub = directory / "cifar-10-batches-py"
    sub.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (n, 3072)).astype(np.uint8),
                 b"labels": list(rng.integers(0, 10, n).tolist()), b"batch_label": b"x"}
        with open(sub / name, "wb") as f:
            pickle.dump(batch, f)
    return sub


def test_cifar10_reader(tmp_path):
    sub = _write_cifar(tmp_path)
    images, labels = load_cifar10(tmp_path, "train")
    assert images.shape == (20, 3, 32, 32) and images.dtype == torch.uint8 and labels.shape == (20,)
    with open(sub / "data_batch_1", "rb") as f:
        first = pickle.load(f)[b"data"][0]
    # channel-major rows: the first 1024 values are the red plane
    assert images[0, 0].flatten().tolist() == first[:1024].tolist()
    assert load_cifar10(sub, "test")[0].shape == (4, 3, 32, 32)


def test_cifar10_errors(tmp_path):
    sub = _write_cifar(tmp_path)
    (sub / "data_batch_3").unlink()
    with pytest.raises(ImageDataError, match="data_batch_3.*no such file"):
        load_cifar10(tmp_path, "train")
    data = (sub / "test_batch").read_bytes()
    (sub / "test_batch").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageDataError, match="test_batch.*truncated or corrupt"):
        load_cifar10(tmp_path, "test")
    with open(sub / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, f)
    with pytest.raises(ImageDataError, match=r"test_batch.*\(N, 3072\)"):
        load_cifar10(tmp_path, "test")


def test_cifar10_refuses_arbitrary_pickles(tmp_path):
    sub = _write_cifar(tmp_path)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with open(sub / "test_batch", "wb") as f:
        pickle.dump(Evil(), f)
    with pytest.raises(ImageDataError, match="refusing"):
        load_cifar10(tmp_path, "test")


def test_digits_are_8bit_and_split_disjointly():
    tr, ytr = load_digits("train")
    te, _ = load_digits("test")
    assert tr.shape == (1437, 1, 8, 8) and te.shape == (360, 1, 8, 8)
    assert tr.dtype == torch.uint8 and int(tr.max()) == 255 and int(tr.min()) == 0
    assert ytr.shape == (1437,)


def test_prepared_round_trip_and_errors(tmp_path):
    x = torch.randint(0, 256, (6, 1, 3, 3), dtype=torch.uint8)
    y = torch.arange(6)
    meta = save_prepared(tmp_path / "d", "toy", {"train": (x, y), "test": (x[:2], y[:2])})
    assert meta["splits"] == {"train": 6, "test": 2} and meta["image_shape"] == [1, 3, 3]
    images, labels = load_prepared(tmp_path / "d", "train")
    assert torch.equal(images, x) and torch.equal(labels, y)
    with pytest.raises(ImageDataError, match="meta.json"):
        load_prepared(tmp_path / "missing", "train")
    (tmp_path / "d" / "test.pt").write_bytes(b"garbage")
    with pytest.raises(ImageDataError, match="test.pt"):
        load_prepared(tmp_path / "d", "test")


def test_categorical_baseline_by_hand():
    # 3 training images of 1x1x2 pixels; position 0 is always 10, position 1 takes 0, 0, 7
    train = torch.tensor([[10, 0], [10, 0], [10, 7]], dtype=torch.uint8).reshape(3, 1, 1, 2)
    test = torch.tensor([[10, 7], [3, 0]], dtype=torch.uint8).reshape(2, 1, 1, 2)
    denom = 3 + 256
    bits = [
        -math.log2(4 / denom) - math.log2(2 / denom),   # (10, 7)
        -math.log2(1 / denom) - math.log2(3 / denom),   # (3, 0): 3 never seen at position 0
    ]
    res = categorical_baseline_bpd(train, test)
    assert res["test_bpd"] == pytest.approx(sum(bits) / 4, abs=1e-12)
    base = CategoricalBaseline(train)
    assert base.per_image_bits(test).tolist() == pytest.approx(bits, abs=1e-12)
    # probabilities of every position sum to one
    assert torch.allclose((2 ** base.log2_probs).sum(1), torch.ones(2, dtype=torch.float64))


def test_categorical_baseline_without_data_is_8_bits():
    train = torch.zeros(0, 1, 2, 2, dtype=torch.uint8)
    test = torch.randint(0, 256, (5, 1, 2, 2), dtype=torch.uint8)
    assert categorical_baseline_bpd(train, test)["test_bpd"] == pytest.approx(8.0, abs=1e-12)


def test_png_grid_round_trip(tmp_path):
    pil = pytest.importorskip("PIL.Image")
    imgs = torch.randint(0, 256, (5, 3, 4, 6), dtype=torch.uint8)
    grid = make_grid(imgs, nrow=2, padding=1, scale=2)
    assert grid.shape == (3, 1 + 3 * 9, 1 + 2 * 13)
    write_png(tmp_path / "g.png", grid)
    back = np.asarray(pil.open(tmp_path / "g.png"))
    assert back.shape == (28, 27, 3) and (back == grid.permute(1, 2, 0).numpy()).all()
    assert read_png_size(tmp_path / "g.png") == (27, 28)
    write_png(tmp_path / "grey.png", imgs[0, :1])
    assert (np.asarray(pil.open(tmp_path / "grey.png")) == imgs[0, 0].numpy()).all()
