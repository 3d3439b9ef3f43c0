"""A deterministic source signal at the sample rate from a frame-rate F0 track.

In the spirit of neural source-filter models (Wang, Takaki & Yamagishi, 2019, "Neural
source-filter-based waveform model for statistical parametric speech synthesis"), a vocoder is
told *where the harmonics are* instead of having to discover them: the excitation is a stack of
sinusoids at the harmonics of F0 with a cumulative (hence continuous) phase in voiced frames and
silence in unvoiced ones, plus the voicing flag itself. A flow vocoder gets it beside the mel in
every coupling's conditioner; it stays an exact, invertible flow *given* the excitation.

Phase continuity: the phase is the running sum of the instantaneous frequency, so a voiced
stretch never jumps, across frames or anywhere. The signal is a deterministic function of the
whole F0 track; chunked synthesis computes it once for the utterance and slices it, so chunks
join exactly.

>>> import torch
>>> exc = HarmonicExcitation(sample_rate=16000, hop_length=160, n_harmonics=3)
>>> f0 = torch.tensor([[0.0, 100.0, 100.0, 0.0]])
>>> e = exc(f0)
>>> e.shape, exc.channels
(torch.Size([1, 4, 640]), 4)
>>> float(e[0, :3, :160].abs().max()), float(e[0, 3, 200])
(0.0, 1.0)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["HarmonicExcitation", "cumulative_phase", "fill_unvoiced", "frame_interpolation",
           "upsample_f0"]


def _last_index(mask: torch.Tensor) -> torch.Tensor:
    """``(B, F)`` bool -> index of the last ``True`` at or before each position (-1: none).

    A running maximum of the indices, computed with a cumulative count, a scatter and a gather
    only (ONNX has no cumulative maximum): slot ``k`` of a table holds the index of the
    ``k``-th ``True`` (slot 0 collects the rest), and position ``t`` reads slot ``count[t]``.

    >>> import torch
    >>> _last_index(torch.tensor([[False, True, False, False, True, False]])).tolist()
    [[-1, 1, 1, 1, 4, 4]]
    """
    b, frames = mask.shape
    count = torch.cumsum(mask.long(), dim=1)
    idx = torch.arange(frames, device=mask.device).expand(b, frames)
    table = torch.zeros(b, frames + 1, dtype=torch.long, device=mask.device)
    table = table.scatter(1, torch.where(mask, count, torch.zeros_like(count)), idx)
    return torch.where(count > 0, torch.gather(table, 1, count), torch.full_like(count, -1))


def fill_unvoiced(f0: torch.Tensor) -> torch.Tensor:
    """``(B, frames)`` F0 with every unvoiced (``<= 0``) frame set to the nearest voiced frame's
    value before it, or after it at the start (all-unvoiced rows stay 0).

    >>> import torch
    >>> fill_unvoiced(torch.tensor([[0.0, 100.0, 0.0, 0.0, 120.0, 0.0]])).tolist()
    [[100.0, 100.0, 100.0, 100.0, 120.0, 120.0]]
    """
    voiced = f0 > 0
    frames = f0.shape[1]
    if frames == 0:
        return f0
    last = _last_index(voiced)
    nxt = frames - 1 - _last_index(voiced.flip(1)).flip(1)  # `frames` where none follows
    prev_val = torch.gather(f0, 1, last.clamp_min(0))
    next_val = torch.gather(f0, 1, nxt.clamp_max(frames - 1))
    return torch.where(voiced, f0, torch.where(last >= 0, prev_val, next_val))


def frame_interpolation(frames: int, hop_length: int, device=None, dtype=torch.float32):
    """``(lo, hi, w)`` of linear interpolation from frame centres ``(t + 0.5) * hop`` to the
    ``frames * hop`` samples (edges held): sample ``n`` of a frame-rate ``x`` is
    ``x[..., lo[n]] * (1 - w[n]) + x[..., hi[n]] * w[n]``.

    >>> lo, hi, w = frame_interpolation(2, 4)
    >>> lo.tolist(), hi.tolist(), w.tolist()
    ([0, 0, 0, 0, 0, 0, 1, 1], [1, 1, 1, 1, 1, 1, 1, 1], [0.0, 0.0, 0.125, 0.375, 0.625, 0.875, 0.0, 0.0])
    """
    hop = int(hop_length)
    pos = (torch.arange(frames * hop, device=device, dtype=dtype) + 0.5) / hop - 0.5
    pos = pos.clamp(0, frames - 1)
    lo = pos.floor().long().clamp(max=frames - 1)
    hi = (lo + 1).clamp(max=frames - 1)
    return lo, hi, pos - lo.to(pos.dtype)


def cumulative_phase(f0_samples: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Cumulative phase ``(B, T)`` in radians of a sample-rate F0 track, wrapped to ``[0, 2 pi)``
    per cycle count in float64 (so that minutes of audio keep sample-accurate phase); the phase
    of sample ``n`` is that reached *before* it advances (sample 0 has phase 0)."""
    cycles = torch.cumsum(f0_samples.double() / sample_rate, dim=1)
    cycles = F.pad(cycles[:, :-1], (1, 0))
    return 2 * math.pi * torch.remainder(cycles, 1.0)


def upsample_f0(f0: torch.Tensor, hop_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Frame-rate F0 ``(B, frames)`` (Hz, ``0`` = unvoiced) to the sample rate.

    Frame ``t`` describes samples ``[t * hop, (t + 1) * hop)`` (its centre is
    ``(t + 0.5) * hop``). Within a voiced stretch F0 is interpolated linearly between frame
    centres (so the frequency, and the phase's slope, has no steps); voicing is held per frame.
    Returns ``(f0_samples, voiced_samples)``, both ``(B, frames * hop)``.

    >>> import torch
    >>> f, v = upsample_f0(torch.tensor([[100.0, 200.0]]), 4)
    >>> f[0].tolist()
    [100.0, 100.0, 112.5, 137.5, 162.5, 187.5, 200.0, 200.0]
    """
    if f0.dim() != 2:
        raise ValueError(f"f0 must be (B, frames), got {tuple(f0.shape)}")
    hop = int(hop_length)
    voiced = f0 > 0
    b, frames = f0.shape
    if frames == 0:
        empty = f0.new_zeros(b, 0)
        return empty, empty
    # fill unvoiced frames with the nearest voiced value so that interpolation at the edges of a
    # voiced stretch does not pull towards 0 (they are masked out afterwards anyway)
    filled = fill_unvoiced(f0)
    lo, hi, w = frame_interpolation(frames, hop, f0.device, f0.dtype)
    f = filled[:, lo] * (1 - w) + filled[:, hi] * w
    v = voiced.repeat_interleave(hop, dim=1)
    return f * v, v.to(f0.dtype)


class HarmonicExcitation(nn.Module):
    """Excitation channels ``(B, n_harmonics + 1, frames * hop)`` from F0 ``(B, frames)``.

    Channel ``k - 1`` (``k = 1..n_harmonics``) is ``sin(k * phi)`` where the sample is voiced and
    ``k * F0`` lies below ``max_fraction`` of the Nyquist frequency (no aliased harmonics), else
    0; the last channel is the voicing flag. ``phi`` is ``2 pi`` times the running sum of
    ``F0 / sample_rate`` over the utterance, so it is continuous across frames and chunks.
    No parameters; the output depends on nothing but the F0 track.
    """

    def __init__(self, sample_rate: int, hop_length: int, n_harmonics: int = 8,
                 max_fraction: float = 0.9):
        super().__init__()
        if n_harmonics < 1:
            raise ValueError(f"n_harmonics must be >= 1, got {n_harmonics}")
        self.sample_rate = int(sample_rate)
        self.hop_length = int(hop_length)
        self.n_harmonics = int(n_harmonics)
        self.max_fraction = float(max_fraction)

    @property
    def channels(self) -> int:
        return self.n_harmonics + 1

    def extra_repr(self) -> str:
        return f"sr={self.sample_rate}, hop={self.hop_length}, n_harmonics={self.n_harmonics}"

    def phase(self, f0_samples: torch.Tensor) -> torch.Tensor:
        """Cumulative phase ``(B, T)`` in radians (:func:`cumulative_phase`)."""
        return cumulative_phase(f0_samples, self.sample_rate)

    def forward(self, f0: torch.Tensor) -> torch.Tensor:
        if f0.dim() == 1:
            f0 = f0[None]
        dtype = f0.dtype if f0.dtype.is_floating_point else torch.get_default_dtype()
        f0 = f0.to(dtype)
        if not torch.isfinite(f0).all() or (f0 < 0).any():
            raise ValueError("f0 must be finite and >= 0 (Hz, 0 = unvoiced)")
        f, v = upsample_f0(f0, self.hop_length)
        phi = self.phase(f)  # float64
        k = torch.arange(1, self.n_harmonics + 1, device=f0.device, dtype=torch.float64)
        kphi = torch.remainder(k[None, :, None] * phi[:, None], 2 * math.pi)
        nyq = self.max_fraction * self.sample_rate / 2
        ok = (k[None, :, None] * f.double()[:, None] < nyq) & (v[:, None] > 0)
        harm = torch.sin(kphi) * ok
        return torch.cat([harm.to(dtype), v[:, None].to(dtype)], dim=1)
