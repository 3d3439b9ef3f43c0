"""Feature and audio archives in Kaldi ark/scp form (via kaldiio).

Features are stored as float32 matrices ``(frames, n_mels)`` (Kaldi's and ESPnet's layout).
A ``feats.scp`` written by another toolkit (``kaldiio.WriteHelper('ark,scp:a.ark,a.scp')``,
ESPnet's TTS decoder, Kaldi itself) is read by the same :func:`read_feats` that decoding uses.

>>> import tempfile
>>> with tempfile.TemporaryDirectory() as d:
...     with ArkScpWriter(os.path.join(d, "f.ark"), os.path.join(d, "f.scp")) as w:
...         w.write("u1", np.zeros((3, 80), np.float32))
...     [(k, v.shape) for k, v in read_feats(os.path.join(d, "f.scp"))]
[('u1', (3, 80))]
>>> as_frames_by_mels(np.zeros((80, 5)), n_mels=80).shape
(5, 80)
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import kaldiio
import numpy as np

from vocoflow.atomic import AtomicFile, atomic_write_text

__all__ = [
    "read_scp",
    "read_feats",
    "load_feat",
    "as_frames_by_mels",
    "ArkScpWriter",
    "FeatureShapeError",
]


class FeatureShapeError(ValueError):
    """A feature matrix whose axes do not match the expected number of mel bins."""


def read_scp(path: str | os.PathLike) -> dict[str, str]:
    """``{id: value}`` of a scp/table file in file order; malformed or duplicate lines raise
    ``ValueError('<file>:<line>: ...')``."""
    path = os.fspath(path)
    out: dict[str, str] = {}
    lines: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            key, _, value = line.partition(" ")
            value = value.strip()
            if not value:
                raise ValueError(f"{path}:{lineno}: malformed line: expected '<id> <value>', got {line!r}")
            if key in out:
                raise ValueError(f"{path}:{lineno}: duplicate id {key!r} (first on line {lines[key]})")
            out[key] = value
            lines[key] = lineno
    return out


def resolve_entry(value: str, scp_path: str | None = None) -> str:
    """An ark entry (``path:offset``) as given when its file exists (Kaldi: relative to the
    directory the tools run in). Otherwise, the same relative path is looked up from the scp
    file's directory and then from each of its parents (a recipe directory writes
    ``dump/x/data/feats.ark`` into ``dump/x/feats.scp``; used from elsewhere, the recipe
    directory is an ancestor of the scp), and the first existing file is used."""
    if scp_path is None or value.rstrip().endswith("|"):
        return value
    ark, sep, rest = value.rpartition(":")
    if not sep or not rest.split("[")[0].isdigit():
        ark, rest = value, None
    if os.path.isabs(ark) or os.path.exists(ark):
        return value
    base = os.path.dirname(os.path.abspath(os.fspath(scp_path)))
    while True:
        alt = os.path.join(base, ark)
        if os.path.exists(alt):
            return alt if rest is None else f"{alt}:{rest}"
        parent = os.path.dirname(base)
        if parent == base:
            return value
        base = parent


def as_frames_by_mels(feat, n_mels: int | None, name: str = "features") -> np.ndarray:
    """Return a 2-D feature matrix as ``(frames, n_mels)``.

    Accepts ``(frames, n_mels)`` or ``(n_mels, frames)``; when both axes equal ``n_mels`` the
    Kaldi layout ``(frames, n_mels)`` is assumed. Raises :class:`FeatureShapeError` naming
    ``name`` when neither axis matches (or the array is not 2-D). ``n_mels=None`` only checks
    that it is 2-D.

    >>> as_frames_by_mels(np.zeros((7, 80)), 80).shape
    (7, 80)
    >>> as_frames_by_mels(np.zeros((7, 60)), 80, "u1")
    Traceback (most recent call last):
    ...
    vocoflow.audio.kaldi_io.FeatureShapeError: u1: feature matrix of shape (7, 60) has no axis of n_mels=80 (expected (frames, 80) or (80, frames))
    """  # noqa: E501 (the doctest's expected exception message is one line)
    arr = np.asarray(feat)
    if arr.ndim != 2:
        raise FeatureShapeError(f"{name}: expected a 2-D feature matrix, got shape {arr.shape}")
    if n_mels is None or arr.shape[1] == n_mels:
        return arr
    if arr.shape[0] == n_mels:
        return arr.T
    raise FeatureShapeError(
        f"{name}: feature matrix of shape {arr.shape} has no axis of n_mels={n_mels} "
        f"(expected (frames, {n_mels}) or ({n_mels}, frames))"
    )


def load_feat(value: str, n_mels: int | None = None, name: str = "features", fd_dict: dict | None = None,
              scp_path: str | None = None) -> np.ndarray:
    """Load one scp value (``a.ark:12``, ``a.ark:12[0:9]``, ``cmd |``, ``x.npy``) as
    float32 ``(frames, n_mels)``."""
    entry = resolve_entry(value, scp_path)
    try:
        if entry.endswith(".npy") and os.path.isfile(entry):
            arr = np.load(entry)
        else:
            arr = kaldiio.load_mat(entry, fd_dict=fd_dict)
    except Exception as e:  # kaldiio raises many kinds of errors
        raise ValueError(f"{name}: cannot read features from {value!r} ({type(e).__name__}: {e})") from None
    if isinstance(arr, tuple):
        raise ValueError(f"{name}: {value!r} holds audio, not a feature matrix")
    return np.ascontiguousarray(as_frames_by_mels(arr, n_mels, name), dtype=np.float32)


def load_f0(value: str, frames: int, name: str = "F0", fd_dict: dict | None = None,
            scp_path: str | None = None) -> np.ndarray:
    """Load one scp value holding an F0 track (a Kaldi float vector, Hz per frame, ``0`` =
    unvoiced, as ``preprocess --pitch`` writes to ``f0.scp``) as float32 ``(frames,)``, checked
    against the number of mel frames and for finite, non-negative values."""
    entry = resolve_entry(value, scp_path)
    try:
        f0 = np.asarray(kaldiio.load_mat(entry, fd_dict=fd_dict), dtype=np.float32)
    except Exception as e:  # kaldiio raises many kinds of errors
        raise ValueError(f"{name}: cannot read an F0 track from {value!r} ({type(e).__name__}: {e})") from None
    if f0.ndim != 1 or len(f0) != frames:
        raise ValueError(f"{name}: F0 track of shape {f0.shape} does not match {frames} mel frames")
    if not np.all(np.isfinite(f0)) or (f0 < 0).any():
        raise ValueError(f"{name}: F0 must be finite and >= 0 Hz")
    return f0


def read_feats(scp: str | os.PathLike, n_mels: int | None = None) -> Iterator[tuple[str, np.ndarray]]:
    """Iterate ``(utt_id, float32 array (frames, n_mels))`` over a ``feats.scp``.

    With ``n_mels``, ``(n_mels, frames)`` matrices are transposed and matrices with no axis of
    that size raise :class:`FeatureShapeError` naming the utterance and scp file.
    """
    scp = os.fspath(scp)
    fd_dict: dict = {}
    try:
        for key, value in read_scp(scp).items():
            yield key, load_feat(value, n_mels, name=f"{scp}: utterance {key}", fd_dict=fd_dict, scp_path=scp)
    finally:
        for fd in fd_dict.values():
            fd.close()


class ArkScpWriter:
    """Write an ark and its scp so that neither appears under its final name until complete.

    Data go to a temporary file next to ``ark_path``; :meth:`commit` renames it and then writes
    the scp (atomically). The scp lines point at ``ark_path`` exactly as given (Kaldi's rule:
    relative paths are relative to the directory the tools run from), or at ``ark_name`` when
    the ark is written somewhere else (a staging directory) and moved there before it is read
    (offsets do not depend on the name). Values are float arrays
    (written as Kaldi float matrices/vectors) or ``(rate, int16 array)`` (a WAV inside the ark).
    Used as a context manager it commits on success and removes the temporary file on error.
    """

    def __init__(self, ark_path: str | os.PathLike, scp_path: str | os.PathLike,
                 ark_name: str | os.PathLike | None = None):
        self.ark_path = os.fspath(ark_path)
        self.scp_path = os.fspath(scp_path)
        self.ark_name = self.ark_path if ark_name is None else os.fspath(ark_name)
        self._ark = AtomicFile(self.ark_path, "wb")
        self._f = self._ark.file
        self._lines: list[str] = []
        self._keys: set[str] = set()

    def write(self, key: str, value) -> None:
        if key in self._keys or not key or any(c.isspace() for c in key):
            raise ValueError(f"bad or duplicate key {key!r}")
        self._keys.add(key)
        offset = self._f.tell() + len(key.encode("utf-8")) + 1
        if isinstance(value, tuple):
            rate, arr = value
            kaldiio.save_ark(self._f, {key: (int(rate), np.asarray(arr, dtype=np.int16))})
        else:
            kaldiio.save_ark(self._f, {key: np.asarray(value, dtype=np.float32)})
        self._lines.append(f"{key} {self.ark_name}:{offset}\n")

    def commit(self) -> None:
        self._ark.commit()
        atomic_write_text(self.scp_path, "".join(self._lines))

    def abort(self) -> None:
        self._ark.abort()

    def __enter__(self) -> "ArkScpWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()
