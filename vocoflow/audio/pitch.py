"""F0 and voicing on the mel frame grid, with WORLD's DIO + StoneMask (through ``pyworld``).

Chosen by measurement on this project's CPUs (10 s of 16 kHz audio, one core): DIO + StoneMask
0.17 s, Harvest 3.5 s, librosa's pYIN 1.7 s (after its JIT warm-up); DIO + StoneMask is the
tracker of most TTS recipes (FastSpeech 2, ESPnet) and preprocesses the bundled 25-minute
corpus in well under a minute.

Frame ``t`` of the mel front end describes samples ``[t * hop, (t + 1) * hop)``, so its F0 is
taken at time ``(t + 0.5) * hop / sr``. The track is a float32 vector of Hz with ``0`` for
unvoiced frames, one value per mel frame.

>>> import numpy as np
>>> sr, hop = 16000, 256
>>> t = np.arange(sr) / sr
>>> wav = 0.5 * np.sin(2 * np.pi * 200 * t)
>>> f0 = track_f0(wav, sr, hop, frames=len(wav) // hop)
>>> f0.shape, bool(abs(np.median(f0[f0 > 0]) - 200) < 2)
((62,), True)
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass

import numpy as np

__all__ = ["PitchConfig", "track_f0", "lf0_statistics"]


@dataclass(frozen=True)
class PitchConfig:
    """Settings of the F0 tracker (``f0_floor``/``f0_ceil`` in Hz)."""

    tracker: str = "dio"
    f0_floor: float = 60.0
    f0_ceil: float = 500.0

    def __post_init__(self):
        if self.tracker not in ("dio", "harvest"):
            raise ValueError(f"pitch tracker must be 'dio' or 'harvest', got {self.tracker!r}")
        if not 0 < self.f0_floor < self.f0_ceil:
            raise ValueError(f"need 0 < f0_floor < f0_ceil, got {self.f0_floor}, {self.f0_ceil}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> "PitchConfig":
        data = dict(data or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown pitch setting(s): {', '.join(unknown)}")
        return cls(**data)


def _pyworld():
    with warnings.catch_warnings():  # pyworld imports the deprecated pkg_resources
        warnings.simplefilter("ignore")
        import pyworld
    return pyworld


def track_f0(wav, sample_rate: int, hop_length: int, frames: int | None = None,
             config: PitchConfig | None = None) -> np.ndarray:
    """F0 in Hz per mel frame (``0`` = unvoiced), float32 ``(frames,)``.

    ``frames`` defaults to ``len(wav) // hop_length``; the track is sampled at frame centres.
    """
    cfg = config or PitchConfig()
    pw = _pyworld()
    x = np.ascontiguousarray(np.asarray(wav, dtype=np.float64).reshape(-1))
    if frames is None:
        frames = len(x) // hop_length
    if frames <= 0:
        return np.zeros(0, np.float32)
    period = 1000.0 * hop_length / sample_rate
    if cfg.tracker == "dio":
        f0, times = pw.dio(x, sample_rate, f0_floor=cfg.f0_floor, f0_ceil=cfg.f0_ceil,
                           frame_period=period)
        f0 = pw.stonemask(x, f0, times, sample_rate)
    else:
        f0, times = pw.harvest(x, sample_rate, f0_floor=cfg.f0_floor, f0_ceil=cfg.f0_ceil,
                               frame_period=period)
    # the tracker's frames sit at k * hop; ours at (k + 0.5) * hop: interpolate log-F0 between
    # two voiced neighbours, voiced only where both are
    centres = (np.arange(frames) + 0.5) * hop_length / sample_rate
    k = np.clip(np.searchsorted(times, centres) - 1, 0, len(times) - 1)
    k1 = np.clip(k + 1, 0, len(times) - 1)
    a, b = f0[k], f0[k1]
    span = np.where(times[k1] > times[k], times[k1] - times[k], 1.0)
    w = np.clip((centres - times[k]) / span, 0.0, 1.0)
    both = (a > 0) & (b > 0)
    out = np.zeros(frames, np.float64)
    out[both] = np.exp((1 - w[both]) * np.log(a[both]) + w[both] * np.log(b[both]))
    one = (a > 0) ^ (b > 0)
    nearest = np.where(w < 0.5, a, b)
    out[one] = nearest[one]  # a voicing edge: take the nearer frame's verdict
    return out.astype(np.float32)


def lf0_statistics(tracks) -> tuple[float, float, int]:
    """``(mean, std, n_voiced)`` of natural-log F0 over the voiced frames of several tracks."""
    n, s, ss = 0, 0.0, 0.0
    for f0 in tracks:
        v = np.asarray(f0, np.float64)
        v = np.log(v[v > 0])
        n += v.size
        s += float(v.sum())
        ss += float((v * v).sum())
    if n == 0:
        return math.log(150.0), 0.25, 0
    mean = s / n
    std = math.sqrt(max(ss / n - mean * mean, 1e-8))
    return mean, std, n
