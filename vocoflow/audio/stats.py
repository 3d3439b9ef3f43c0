"""Feature statistics (per-bin mean and scale) and normalised dump directories.

:class:`Stats` is computed over feature matrices (:meth:`Stats.from_features`), applied
(:meth:`~Stats.normalize`, :meth:`~Stats.denormalize`) and stored as ``stats.npz``
(:meth:`~Stats.save`; :meth:`Stats.load` is the one reader of such a file, with errors naming
it). :func:`compute_stats` computes them over a dump directory; :func:`normalize` writes a
normalised copy of a dump (layout in :mod:`vocoflow.audio.dump`).
"""

from __future__ import annotations

import logging
import os
import zipfile
from dataclasses import dataclass

import numpy as np

from vocoflow.atomic import atomic_copy, atomic_open

from .dump import FEATURE_FILES, INDEX_FILES, StagedDump, require_complete
from .kaldi_io import ArkScpWriter, load_feat, read_feats, read_scp
from .mel import MelConfig

__all__ = ["Stats", "StatsError", "compute_stats", "normalize"]

log = logging.getLogger(__name__)


class StatsError(ValueError):
    """An unusable statistics file. ``str(e)`` is ``"<path>: <reason>"``; ``e.path``, ``e.reason``."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):
        return (type(self), (self.path, self.reason))


@dataclass
class Stats:
    """Per-bin mean and scale (standard deviation) of features; ``count`` frames.

    A bin with (near) zero deviation gets scale 1, as scikit-learn's StandardScaler does.

    >>> s = Stats.from_features([np.array([[0.0, 1.0], [2.0, 1.0]])])
    >>> s.mean.tolist(), s.scale.tolist(), s.count
    ([1.0, 1.0], [1.0, 1.0], 2)
    >>> s.normalize(np.array([[3.0, 1.0]])).tolist()
    [[2.0, 0.0]]
    """

    mean: np.ndarray
    scale: np.ndarray
    count: int

    def __post_init__(self):
        self.mean = np.asarray(self.mean, dtype=np.float64)
        self.scale = np.asarray(self.scale, dtype=np.float64)
        problem = _problem(self.mean, self.scale)
        if problem is not None:
            raise ValueError(f"bad feature statistics: {problem}")

    @classmethod
    def from_features(cls, feats) -> "Stats":
        """Statistics over 2-D ``(frames, bins)`` matrices; a matrix with NaN or infinite values
        raises ``ValueError`` (:func:`compute_stats` names the utterance)."""
        n, mean, m2 = 0, None, None
        for i, x in enumerate(feats):
            x = np.asarray(x, dtype=np.float64)
            if x.ndim != 2 or x.shape[0] == 0:
                continue
            if not np.isfinite(x).all():
                raise ValueError(f"feature matrix {i} contains NaN or infinite values")
            k = x.shape[0]
            mu = x.mean(axis=0)
            q = ((x - mu) ** 2).sum(axis=0)
            if mean is None:
                n, mean, m2 = k, mu, q
                continue
            if x.shape[1] != mean.shape[0]:
                raise ValueError(f"feature dimension changed from {mean.shape[0]} to {x.shape[1]}")
            delta = mu - mean
            total = n + k
            mean = mean + delta * (k / total)  # Chan et al. pairwise update
            m2 = m2 + q + delta**2 * (n * k / total)
            n = total
        if mean is None:
            raise ValueError("no features to compute statistics from")
        std = np.sqrt(m2 / n)
        scale = np.where(std < 10 * np.finfo(np.float64).eps * np.maximum(1.0, np.abs(mean)), 1.0, std)
        return cls(mean, scale, int(n))

    def normalize(self, x: np.ndarray) -> np.ndarray:
        """``(x - mean) / scale`` over the last axis (``(frames, n_mels)``)."""
        return ((x - self.mean) / self.scale).astype(np.float32)

    def denormalize(self, x: np.ndarray) -> np.ndarray:
        return (x * self.scale + self.mean).astype(np.float32)

    def save(self, path: str | os.PathLike) -> None:
        """Write ``stats.npz`` (``mean``, ``scale``, ``count``) atomically."""
        with atomic_open(path, "wb") as f:
            np.savez(f, mean=self.mean, scale=self.scale, count=np.int64(self.count))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Stats":
        """Read a ``stats.npz``. A missing file raises :class:`FileNotFoundError`, anything
        else wrong with it :class:`StatsError` (a ``ValueError``); both name the file.

        >>> Stats.load("/nonexistent/stats.npz")
        Traceback (most recent call last):
        ...
        FileNotFoundError: [Errno 2] no such statistics file: '/nonexistent/stats.npz'
        """
        path = os.fspath(path)
        if not os.path.exists(path):
            import errno

            raise FileNotFoundError(errno.ENOENT, "no such statistics file", path)
        try:
            z = np.load(path)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise StatsError(path, f"cannot read statistics ({type(e).__name__}: {e})") from None
        if not hasattr(z, "files"):  # a plain .npy array
            raise StatsError(path, "not a stats file (an .npy array, expected an .npz archive)")
        try:
            with z:
                missing = {"mean", "scale"} - set(z.files)
                if missing:
                    raise StatsError(path, f"not a stats file (missing {', '.join(sorted(missing))})")
                mean = np.asarray(z["mean"]).astype(np.float64)
                scale = np.asarray(z["scale"]).astype(np.float64)
                count = int(z["count"]) if "count" in z.files else 0
        except StatsError:
            raise
        except (OSError, ValueError, TypeError, EOFError, zipfile.BadZipFile) as e:
            raise StatsError(path, f"cannot read statistics ({type(e).__name__}: {e})") from None
        problem = _problem(mean, scale)
        if problem is not None:
            raise StatsError(path, problem)
        return cls(mean, scale, count)


def _problem(mean: np.ndarray, scale: np.ndarray) -> str | None:
    """What is wrong with a mean/scale pair (``None``: nothing)."""
    if mean.ndim != 1 or mean.shape != scale.shape or mean.size == 0:
        return f"mean and scale must be non-empty vectors of one size, got shapes {mean.shape} and {scale.shape}"
    if not (np.isfinite(mean).all() and np.isfinite(scale).all()):
        return "mean/scale contain NaN or infinite values"
    if not (scale > 0).all():
        bad = int(np.argmax(~(scale > 0)))
        return f"the scale of bin {bad} is {scale[bad]:g}, not positive (every scale must be > 0)"
    return None


def _finite(x: np.ndarray, scp: str, utt: str) -> np.ndarray:
    """``x``, or ``ValueError`` naming the utterance if it holds NaN or infinite values."""
    finite = np.isfinite(x)
    if not finite.all():
        raise ValueError(f"{scp}: utterance {utt}: features contain NaN or infinite values "
                         f"({int(x.size - finite.sum())} of {x.size}); rerun preprocess or drop it")
    return x


def compute_stats(dump_dir: str | os.PathLike, out: str | os.PathLike | None = None, progress=None) -> Stats:
    """Statistics over ``dump_dir/feats.scp`` saved to ``out`` (default ``dump_dir/stats.npz``).

    Features with NaN or infinite values raise ``ValueError`` naming the utterance. ``out`` is
    written atomically, after all features are read: a failed run leaves an existing file as it
    was."""
    dump_dir = os.fspath(dump_dir)
    require_complete(dump_dir)
    n_mels = MelConfig.load(os.path.join(dump_dir, "feats_config.yaml")).n_mels
    scp = os.path.join(dump_dir, "feats.scp")
    stream = (_finite(f, scp, utt) for utt, f in read_feats(scp, n_mels))
    if progress is not None:
        stream = progress(stream, total=len(read_scp(scp)))
    stats = Stats.from_features(stream)
    stats.save(out if out is not None else os.path.join(dump_dir, "stats.npz"))
    return stats


def normalize(dump_dir: str | os.PathLike, stats: Stats | str | os.PathLike, out_dir: str | os.PathLike,
              progress=None) -> int:
    """Write ``out_dir`` with ``(feats - mean) / scale``; the other index files (audio,
    frame counts, config, bad utterances) are copied. Returns the number of utterances.

    Features with NaN or infinite values raise ``ValueError`` naming the utterance. The new
    output replaces an existing ``out_dir`` dump only when it is complete
    (:class:`~vocoflow.audio.dump.StagedDump`); a failed run leaves it byte-identical."""
    dump_dir, out_dir = os.fspath(dump_dir), os.fspath(out_dir)
    require_complete(dump_dir)
    if os.path.abspath(dump_dir) == os.path.abspath(out_dir):
        raise ValueError("normalize: --out-dir must differ from --dump-dir")
    where = "the statistics"
    if not isinstance(stats, Stats):
        where = os.fspath(stats)
        stats = Stats.load(stats)
    config = MelConfig.load(os.path.join(dump_dir, "feats_config.yaml"))
    if stats.mean.shape != (config.n_mels,):
        raise ValueError(f"{where}: {stats.mean.shape[0]} bins, but the features of {dump_dir} have "
                         f"n_mels={config.n_mels}")
    if os.path.isfile(os.path.join(dump_dir, "norm_stats.npz")):
        log.warning("%s is already normalised; normalising again", dump_dir)
    scp = os.path.join(dump_dir, "feats.scp")
    entries = read_scp(scp)
    stage = StagedDump(out_dir)
    n = 0
    fd_dict: dict = {}
    try:
        with ArkScpWriter(stage.path("data/feats.ark"), stage.path("feats.scp"),
                          ark_name=stage.final("data/feats.ark")) as w:
            items = entries.items()
            if progress is not None:
                items = progress(items, total=len(entries))
            for utt, value in items:
                x = load_feat(value, config.n_mels, name=f"{scp}: utterance {utt}", fd_dict=fd_dict, scp_path=scp)
                w.write(utt, stats.normalize(_finite(x, scp, utt)))
                n += 1
        for name in INDEX_FILES:
            src = os.path.join(dump_dir, name)
            if name not in FEATURE_FILES and os.path.isfile(src):
                atomic_copy(src, stage.path(name))
        stats.save(stage.path("norm_stats.npz"))
        stage.commit(f"utterances: {n}\nnormalized_from: {dump_dir}\n")
    except BaseException:
        stage.abort()
        raise
    finally:
        for fd in fd_dict.values():
            fd.close()
    return n
