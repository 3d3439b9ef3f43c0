"""Synthesis helpers shared by every vocoder: chunked inference, the bias denoiser and the
raw/normalised feature check.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["chunked_infer", "Denoiser", "looks_normalized", "snr_db", "activate"]


def snr_db(reference: torch.Tensor, estimate: torch.Tensor) -> float:
    """``10 log10(|ref|^2 / |ref - est|^2)`` in dB (``inf`` when identical).

    >>> import torch
    >>> round(snr_db(torch.ones(4), torch.full((4,), 1.1)), 1)
    20.0
    """
    ref = reference.double().flatten()
    err = (ref - estimate.double().flatten()).pow(2).sum().item()
    sig = ref.pow(2).sum().item()
    if err == 0:
        return math.inf
    return 10 * math.log10(max(sig, 1e-300) / err)


def chunked_infer(model, mel: torch.Tensor, sigma: float, noise: torch.Tensor,
                  chunk_frames: int, context_frames: int | None = None, f0=None) -> torch.Tensor:
    """``model.infer`` over chunks of ``chunk_frames`` frames with bounded memory.

    Each chunk is synthesised with ``context_frames`` extra frames of mel *and of the same
    noise* on both sides (clipped at the utterance ends) and trimmed back to its own samples, so
    the result equals unchunked synthesis whenever the context covers the model's receptive
    field (``model.context_frames``, the default). ``noise`` is the unit-variance noise of the
    whole utterance in sample layout ``(B, frames * hop)``, drawn once by the caller.
    Peak memory is that of synthesising ``chunk_frames + 2 * context_frames`` frames.
    A model with an excitation (``model.make_excitation``) gets it computed once for the whole
    utterance, from ``f0`` or the F0 predicted from the whole mel, and sliced per chunk: the
    harmonics' phase runs on across chunk boundaries exactly as without chunks.
    """
    if chunk_frames < 1:
        raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
    hop = model.hop_length
    ctx = model.context_frames if context_frames is None else int(context_frames)
    batch, _, frames = mel.shape
    if noise.shape != (batch, frames * hop):
        raise ValueError(f"noise must be {(batch, frames * hop)} (sample layout), got {tuple(noise.shape)}")
    exc = None
    if getattr(model, "uses_excitation", False):
        exc = model.make_excitation(mel, f0)
    out = None
    for start in range(0, frames, chunk_frames):
        end = min(frames, start + chunk_frames)
        a, b = max(0, start - ctx), min(frames, end + ctx)
        kw = {} if exc is None else {"excitation": exc[..., a * hop: b * hop]}
        y = model.infer(mel[..., a:b], sigma=sigma, noise=noise[:, a * hop: b * hop], **kw)
        if out is None:
            out = y.new_empty(batch, frames * hop)
        out[:, start * hop: end * hop] = y[:, (start - a) * hop: (end - a) * hop]
    return out


class Denoiser(torch.nn.Module):
    """WaveGlow's bias denoiser (Prenger et al., 2019): subtract ``strength`` times the
    magnitude spectrum of the model's *bias* (its output for a silent mel at ``sigma = 0``) from
    the STFT magnitude of the audio, floor at zero, keep the phase, and invert.

    This removes stationary tones that a vocoder adds to everything it synthesises.

    >>> import torch, math
    >>> t = torch.arange(16000) / 16000
    >>> tone = 0.1 * torch.sin(2 * math.pi * 1000 * t)
    >>> d = Denoiser(tone, n_fft=512)
    >>> noisy = tone + 0.01 * torch.randn(16000, generator=torch.Generator().manual_seed(0))
    >>> bool(d(noisy, strength=1.0).pow(2).sum() < 0.2 * noisy.pow(2).sum())
    True
    """

    def __init__(self, bias_audio: torch.Tensor, n_fft: int = 1024, hop_length: int | None = None,
                 win_length: int | None = None):
        super().__init__()
        self.n_fft = int(n_fft)
        self.hop_length = int(hop_length or n_fft // 4)
        self.win_length = int(win_length or n_fft)
        self.register_buffer("window", torch.hann_window(self.win_length), persistent=False)
        bias = bias_audio.detach().float().reshape(-1)
        mag = self._stft(bias[None]).abs()[0]  # (freqs, frames)
        self.register_buffer("bias_spec", mag.mean(dim=1, keepdim=True), persistent=False)

    def _stft(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stft(x, self.n_fft, self.hop_length, self.win_length,
                          self.window.to(x.device), center=True, return_complex=True)

    def forward(self, audio: torch.Tensor, strength: float = 0.1) -> torch.Tensor:
        if strength <= 0:
            return audio
        squeeze = audio.dim() == 1
        x = (audio[None] if squeeze else audio).float()
        spec = self._stft(x)
        mag = (spec.abs() - strength * self.bias_spec.to(x.device)).clamp_min(0.0)
        out = torch.istft(torch.polar(mag, spec.angle()), self.n_fft, self.hop_length,
                          self.win_length, self.window.to(x.device), center=True,
                          length=x.shape[-1])
        out = out.to(audio.dtype)
        return out[0] if squeeze else out


def looks_normalized(mel: np.ndarray, mean: np.ndarray | None, scale: np.ndarray | None,
                     log_floor: float | None) -> tuple[bool | None, str]:
    """Guess whether one mel ``(n_mels, frames)`` is raw log-mel or mean/scale normalised.

    Returns ``(verdict, reason)``: ``True`` (looks normalised), ``False`` (looks raw) or ``None``
    (cannot tell). The rule, in order:

    1. Hard evidence: raw log-mels are never below the log floor (``log(clamp)``), so a value
       more than 0.5 below it means *not raw*. With statistics, a normalised mel maps back to raw
       by ``x * scale + mean``; if that goes more than 0.5 below the floor it was *not
       normalised*.
    2. With statistics: compare the per-bin means ``m`` of the utterance with both hypotheses,
       ``d_raw = rms((m - mean) / scale)`` and ``d_norm = rms(m)`` (in units of the training
       standard deviation). The closer one wins only when it is decisive: the farther distance
       is at least 2.0 and at least 2.5 times the closer one. Otherwise: cannot tell.
    """
    x = np.asarray(mel, dtype=np.float64)
    if log_floor is not None:
        tol = 0.5
        if x.min() < log_floor - tol:
            return True, (f"values down to {x.min():.2f} lie below the raw log floor "
                          f"{log_floor:.2f}")
        if mean is not None:
            back = x * scale[:, None] + mean[:, None]
            if back.min() < log_floor - tol:
                return False, (f"read as normalised, values map back to {back.min():.2f}, below "
                               f"the raw log floor {log_floor:.2f}")
    if mean is None:
        return None, "no statistics to compare with"
    m = x.mean(axis=1)
    d_raw = float(np.sqrt(np.mean(((m - mean) / scale) ** 2)))
    d_norm = float(np.sqrt(np.mean(m**2)))
    lo, hi = min(d_raw, d_norm), max(d_raw, d_norm)
    if hi >= 2.0 and hi >= 2.5 * lo:
        verdict = d_norm < d_raw
        return verdict, (f"per-bin means are {d_norm:.2f} training std from a normalised mel and "
                         f"{d_raw:.2f} from a raw one")
    return None, f"undecided (d_norm={d_norm:.2f}, d_raw={d_raw:.2f})"


def activate(model: torch.nn.Module, std: float = 0.01) -> None:
    """Give the zero-initialised output layers of a fresh model's WN conditioners small random
    weights, so every coupling does something (speed is the same; the bf16-vs-fp32 SNR and
    chunked-vs-whole comparisons of ``vocoflow benchmark`` would otherwise be trivially exact)."""
    from vocoflow.nets.wavenet import WN

    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, WN):
                m.end.weight.copy_(torch.randn(m.end.weight.shape, generator=g) * std)
