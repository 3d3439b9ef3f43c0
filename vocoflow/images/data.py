"""Image data sets as uint8 tensors ``(N, C, H, W)``: readers for IDX (MNIST, Fashion-MNIST),
the CIFAR-10 python pickles and scikit-learn's bundled 8x8 digits, and the prepared-data format
of the recipes (``DATA_DIR/{train,test}.pt`` + ``meta.json``).

Every problem with a file (missing, truncated, wrong magic number, wrong shape) raises
:class:`ImageDataError` naming the file.
"""

from __future__ import annotations

import gzip
import json
import pickle
import struct
from pathlib import Path

import torch
from torch.utils.data import Dataset

from vocoflow.atomic import atomic_open, atomic_write_text

__all__ = [
    "ImageDataError", "read_idx", "load_idx_split", "load_cifar10", "load_digits",
    "load_raw_dataset", "save_prepared", "load_prepared", "ImageDataset", "DATASETS",
    "IDX_FILES", "CIFAR10_FILES",
]

DATASETS = ("fashion_mnist", "mnist", "cifar10", "digits")

# file stems of the IDX sets; a ".gz" suffix is optional
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
CIFAR10_FILES = {
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test": ("test_batch",),
}
_IDX_TYPES = {0x08: (torch.uint8, 1), 0x09: (torch.int8, 1), 0x0B: (torch.int16, 2),
              0x0C: (torch.int32, 4), 0x0D: (torch.float32, 4), 0x0E: (torch.float64, 8)}


class ImageDataError(Exception):
    """A data file is missing, truncated or not what it should be; the message names it."""

    def __init__(self, path, message: str):
        self.path = str(path)
        super().__init__(f"{path}: {message}")


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise ImageDataError(path, "no such file")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, gzip.BadGzipFile) as e:
            raise ImageDataError(path, f"truncated or corrupt gzip data ({e})") from None
    return raw


def read_idx(path: str | Path) -> torch.Tensor:
    """Read an IDX file (plain or gzip-compressed) into a tensor.

    Format: magic ``00 00 TT NN`` (``TT`` the element type, 0x08 = unsigned byte; ``NN`` the
    number of dims), ``NN`` big-endian uint32 sizes, then the data in row-major order.

    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "x-idx1-ubyte")
    >>> _ = open(p, "wb").write(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9]))
    >>> read_idx(p).tolist()
    [7, 8, 9]
    """
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise ImageDataError(path, f"truncated IDX file: {len(raw)} bytes, no header")
    zero, code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or code not in _IDX_TYPES or ndim == 0:
        raise ImageDataError(path, f"not an IDX file: bad magic number 0x{raw[:4].hex()}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ImageDataError(path, f"truncated IDX header: {len(raw)} of {header} bytes")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype, size = _IDX_TYPES[code]
    n = 1
    for s in shape:
        n *= s
    expected = header + n * size
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "has trailing bytes"
        raise ImageDataError(path, f"IDX file {what}: {len(raw)} bytes, expected {expected} "
                             f"for shape {tuple(shape)}")
    data = torch.frombuffer(bytearray(raw[header:]), dtype=torch.uint8)
    if size > 1:  # big-endian multi-byte elements
        data = data.reshape(-1, size).flip(1).contiguous().view(dtype)
    return data.reshape(shape)


def _find(directory: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    raise ImageDataError(directory / stem, "no such file (nor with .gz)")


def load_idx_split(directory: str | Path, split: str, image_size=(28, 28)):
    """``(images (N, 1, H, W) uint8, labels (N,) int64)`` of the MNIST-format ``split``
    (``train``/``test``) under ``directory``."""
    if split not in IDX_FILES:
        raise ValueError(f"split must be train or test, not {split!r}")
    directory = Path(directory)
    img_path, lab_path = (_find(directory, s) for s in IDX_FILES[split])
    images, labels = read_idx(img_path), read_idx(lab_path)
    if images.dtype != torch.uint8 or images.dim() != 3 or tuple(images.shape[1:]) != tuple(image_size):
        raise ImageDataError(img_path, f"expected uint8 images of shape (N, {image_size[0]}, "
                             f"{image_size[1]}), got {images.dtype} {tuple(images.shape)}")
    if labels.dim() != 1:
        raise ImageDataError(lab_path, f"expected a 1-D label array, got {tuple(labels.shape)}")
    if labels.shape[0] != images.shape[0]:
        raise ImageDataError(lab_path, f"{labels.shape[0]} labels for {images.shape[0]} images "
                             f"in {img_path.name}")
    return images.unsqueeze(1).contiguous(), labels.long()


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickle only what a CIFAR batch holds: dicts, lists, bytes and numpy arrays."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _cifar_dir(directory: Path) -> Path:
    sub = directory / "cifar-10-batches-py"
    return sub if sub.is_dir() else directory


def load_cifar10(directory: str | Path, split: str):
    """``(images (N, 3, 32, 32) uint8, labels (N,) int64)`` from the CIFAR-10 python batches
    (``data_batch_1..5``, ``test_batch``) in ``directory`` or ``directory/cifar-10-batches-py``."""
    if split not in CIFAR10_FILES:
        raise ValueError(f"split must be train or test, not {split!r}")
    directory = _cifar_dir(Path(directory))
    images, labels = [], []
    for name in CIFAR10_FILES[split]:
        path = directory / name
        if not path.is_file():
            raise ImageDataError(path, "no such file")
        try:
            with open(path, "rb") as f:
                batch = _ArrayUnpickler(f, encoding="bytes").load()
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, struct.error) as e:
            raise ImageDataError(path, f"not a readable CIFAR-10 batch (truncated or corrupt: "
                                 f"{type(e).__name__}: {e})") from None
        if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
            raise ImageDataError(path, "not a CIFAR-10 batch: no b'data'/b'labels' entries")
        data = torch.as_tensor(batch[b"data"])
        if data.dtype != torch.uint8 or data.dim() != 2 or data.shape[1] != 3 * 32 * 32:
            raise ImageDataError(path, f"expected uint8 data of shape (N, 3072), got "
                                 f"{data.dtype} {tuple(data.shape)}")
        lab = torch.as_tensor(list(batch[b"labels"]), dtype=torch.long)
        if lab.shape[0] != data.shape[0]:
            raise ImageDataError(path, f"{lab.shape[0]} labels for {data.shape[0]} images")
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(lab)
    return torch.cat(images), torch.cat(labels)


def load_digits(split: str = "train"):
    """scikit-learn's bundled 8x8 digits (1797 images, values 0..16) as 8-bit images
    ``round(v * 255 / 16)``; ``test`` is every fifth image, ``train`` the rest.

    >>> x, y = load_digits("test")
    >>> tuple(x.shape), x.dtype, int(x.max())
    ((360, 1, 8, 8), torch.uint8, 255)
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be train or test, not {split!r}")
    try:
        from sklearn.datasets import load_digits as _sk_digits
    except ImportError as e:  # pragma: no cover
        raise ImportError("the digits data set needs scikit-learn (pip install scikit-learn)") from e
    d = _sk_digits()
    x = torch.as_tensor(d.images, dtype=torch.float64)
    x = torch.round(x * 255.0 / 16.0).to(torch.uint8).reshape(-1, 1, 8, 8)
    y = torch.as_tensor(d.target, dtype=torch.long)
    test = torch.arange(x.shape[0]) % 5 == 0
    keep = test if split == "test" else ~test
    return x[keep].contiguous(), y[keep]


def load_raw_dataset(name: str, source: str | Path | None, split: str):
    """Images and labels of ``split`` from the raw files of data set ``name``."""
    if name == "digits":
        return load_digits(split)
    if source is None:
        raise ValueError(f"data set {name!r} needs the directory of its files")
    if name in ("fashion_mnist", "mnist"):
        return load_idx_split(source, split)
    if name == "cifar10":
        return load_cifar10(source, split)
    raise ValueError(f"unknown data set {name!r}; known: {DATASETS}")


# ---------------------------------------------------------------------------------------------
# Prepared data: DATA_DIR/{split}.pt with uint8 images and labels, DATA_DIR/meta.json
# ---------------------------------------------------------------------------------------------


def save_prepared(data_dir: str | Path, name: str, splits: dict) -> dict:
    """Write ``{split: (images, labels)}`` to ``data_dir`` (atomically, ``meta.json`` last)."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    meta = {"dataset": name, "splits": {}}
    for split, (images, labels) in splits.items():
        with atomic_open(data_dir / f"{split}.pt", "wb") as f:
            torch.save({"images": images.contiguous(), "labels": labels.contiguous()}, f)
        meta["splits"][split] = len(images)
        meta["image_shape"] = list(images.shape[1:])
    atomic_write_text(data_dir / "meta.json", json.dumps(meta, indent=2) + "\n")
    return meta


def load_prepared(data_dir: str | Path, split: str):
    """``(images, labels)`` of ``split`` from a prepared data directory."""
    data_dir = Path(data_dir)
    path = data_dir / f"{split}.pt"
    if not (data_dir / "meta.json").is_file():
        raise ImageDataError(data_dir / "meta.json", "no such file: not a prepared data "
                             "directory (run the recipe's stage 0 / vocoflow prepare-image-data)")
    if not path.is_file():
        raise ImageDataError(path, "no such file")
    try:
        blob = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        raise ImageDataError(path, f"unreadable ({type(e).__name__}: {e})") from None
    images = blob.get("images") if isinstance(blob, dict) else None
    if not torch.is_tensor(images) or images.dtype != torch.uint8 or images.dim() != 4:
        raise ImageDataError(path, "expected uint8 images of shape (N, C, H, W)")
    return images, blob.get("labels")


class ImageDataset(Dataset):
    """Items are ``(C, H, W)`` uint8 tensors.

    >>> import torch
    >>> ds = ImageDataset(torch.zeros(5, 1, 2, 2, dtype=torch.uint8))
    >>> len(ds), ds[0].shape, ds.image_shape
    (5, torch.Size([1, 2, 2]), (1, 2, 2))
    """

    def __init__(self, images: torch.Tensor, limit: int | None = None):
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"expected uint8 (N, C, H, W) images, got {images.dtype} "
                             f"{tuple(images.shape)}")
        self.images = images[:limit] if limit else images

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    def __len__(self):
        return self.images.shape[0]

    def __getitem__(self, i):
        return self.images[i]
