"""Mel matrices stored one per file: ``.npy`` (numpy) and ``.pt`` (a tensor saved with
``torch.save``, as NVIDIA's Tacotron 2 / WaveGlow and HiFi-GAN scripts write them).

Orientation convention of these files: ``(n_mels, frames)``, optionally with a leading batch
axis of 1, ``(1, n_mels, frames)`` (the layout of vocoflow's API and of those scripts). With
``layout="auto"`` a ``(frames, n_mels)`` matrix is accepted too, but only when exactly one axis
has ``n_mels`` entries; a matrix with ``n_mels`` entries on both axes (e.g. 80 x 80) is refused,
because its orientation cannot be told from its shape: give ``layout="mels-frames"`` or
``layout="frames-mels"`` for it. (Kaldi ``ark`` features follow Kaldi's own convention,
``(frames, n_mels)``; see :mod:`vocoflow.audio.kaldi_io`.)

``.pt`` files are read with ``torch.load(..., weights_only=True)``, which executes nothing from
the file; a ``.pt`` that holds anything other than one tensor is refused.

>>> import tempfile, os
>>> with tempfile.TemporaryDirectory() as d:
...     np.save(os.path.join(d, "a.npy"), np.zeros((1, 80, 7), np.float32))
...     load_mel_file(os.path.join(d, "a.npy"), 80).shape
(80, 7)
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["MEL_FILE_EXTS", "LAYOUTS", "MelFileError", "load_mel_file", "orient_mel"]

MEL_FILE_EXTS = (".npy", ".pt")
LAYOUTS = ("auto", "mels-frames", "frames-mels")


class MelFileError(ValueError):
    """A mel file that cannot be read or whose shape does not fit."""


def _read(path: str) -> np.ndarray:
    if path.lower().endswith(".pt"):
        import torch

        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # unpickling refused, truncated file, not a torch file ...
            raise MelFileError(f"{path}: cannot read a tensor from it ({type(e).__name__}: {e})") from None
        if not isinstance(obj, torch.Tensor):
            raise MelFileError(f"{path}: holds a {type(obj).__name__}, not a tensor (a mel .pt file "
                               f"must hold one tensor saved with torch.save)")
        if obj.is_complex() or obj.dtype == torch.bool:
            raise MelFileError(f"{path}: holds a {obj.dtype} tensor, not real-valued features")
        return obj.detach().to(torch.float32).numpy()
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise MelFileError(f"cannot read {path} ({e})") from None
    if not isinstance(arr, np.ndarray):
        raise MelFileError(f"{path}: holds an archive of several arrays, not one mel matrix")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise MelFileError(f"{path}: holds a {arr.dtype} array, not real-valued features")
    return arr


def orient_mel(arr, n_mels: int, layout: str = "auto", name: str = "mel") -> np.ndarray:
    """``arr`` ``(n_mels, frames)``, ``(1, n_mels, frames)`` or (see the module docstring)
    ``(frames, n_mels)`` as float32 ``(n_mels, frames)``; :class:`MelFileError` naming ``name``
    otherwise."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    arr = np.asarray(arr)
    shape = arr.shape
    if arr.ndim == 3 and shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise MelFileError(f"{name}: expected a mel matrix (n_mels, frames) or (1, n_mels, frames), "
                           f"got shape {shape}")
    rows, cols = arr.shape
    if layout == "mels-frames":
        if rows != n_mels:
            raise MelFileError(f"{name}: shape {shape} read as (n_mels, frames) has {rows} bins, "
                               f"expected n_mels={n_mels}")
    elif layout == "frames-mels":
        if cols != n_mels:
            raise MelFileError(f"{name}: shape {shape} read as (frames, n_mels) has {cols} bins, "
                               f"expected n_mels={n_mels}")
        arr = arr.T
    elif rows == n_mels and cols == n_mels:
        raise MelFileError(f"{name}: shape {shape} has n_mels={n_mels} entries on both axes, so its "
                           f"orientation is ambiguous; state it (decode: --mel-layout mels-frames "
                           f"for (n_mels, frames), the convention of .npy/.pt mel files, or "
                           f"--mel-layout frames-mels)")
    elif cols == n_mels:
        arr = arr.T
    elif rows != n_mels:
        raise MelFileError(f"{name}: shape {shape} has no axis of n_mels={n_mels} (expected "
                           f"({n_mels}, frames), (1, {n_mels}, frames) or (frames, {n_mels}))")
    return np.ascontiguousarray(arr, dtype=np.float32)


def load_mel_file(path: str | os.PathLike, n_mels: int, layout: str = "auto",
                  name: str | None = None) -> np.ndarray:
    """Read a ``.npy`` or ``.pt`` mel file as float32 ``(n_mels, frames)`` (see the module
    docstring for the orientation rule); errors are :class:`MelFileError` naming the file."""
    path = os.fspath(path)
    arr = _read(path)
    return orient_mel(arr, n_mels, layout, name=f"{name}: {path}" if name else path)
