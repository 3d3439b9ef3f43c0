"""A small F0 / voicing predictor from the mel spectrogram.

A vocoder conditioned on an excitation signal needs F0; a TTS front end usually gives only the
mel. This network, saved inside the vocoder, predicts per frame the normalised log-F0 and a
voicing logit from the (normalised) mel, so that synthesis needs nothing but the mel. It is
trained beside the flow on the F0 tracked in preprocessing (L1 on normalised log-F0 over voiced
frames + binary cross-entropy on voicing).

>>> import torch
>>> _ = torch.manual_seed(0)
>>> p = PitchPredictor(n_mels=8, channels=16, n_layers=2, lf0_mean=5.0, lf0_scale=0.2)
>>> lf0, logit = p(torch.randn(2, 8, 10))
>>> lf0.shape, logit.shape
(torch.Size([2, 10]), torch.Size([2, 10]))
>>> f0 = p.predict_f0(torch.randn(1, 8, 10))
>>> bool(((f0 == 0) | (f0 > 50)).all())
True
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PitchPredictor", "f0_to_target"]


def f0_to_target(f0: torch.Tensor, lf0_mean: float, lf0_scale: float):
    """``(normalised log-F0, voiced)`` of an F0 track in Hz (``0`` = unvoiced); unvoiced frames
    get target 0 (they are masked out of the F0 loss)."""
    voiced = f0 > 0
    lf0 = torch.where(voiced, (torch.log(f0.clamp_min(1e-3)) - lf0_mean) / lf0_scale,
                      torch.zeros_like(f0))
    return lf0, voiced


class PitchPredictor(nn.Module):
    """Non-causal 1-D convolutions over mel frames: ``mel (B, n_mels, frames) -> (lf0, logit)``,
    both ``(B, frames)``; ``lf0`` is log-F0 normalised by ``(lf0_mean, lf0_scale)`` (statistics
    of the training set's voiced frames, stored as buffers so they travel with the weights).
    """

    def __init__(self, n_mels: int, channels: int = 128, n_layers: int = 4, kernel_size: int = 5,
                 lf0_mean: float = math.log(150.0), lf0_scale: float = 0.25,
                 f0_min: float = 50.0, f0_max: float = 600.0):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        layers = []
        c_in = n_mels
        for _ in range(n_layers):
            layers.append(nn.Conv1d(c_in, channels, kernel_size, padding=kernel_size // 2))
            c_in = channels
        self.layers = nn.ModuleList(layers)
        self.norms = nn.ModuleList(nn.GroupNorm(1, channels) for _ in range(n_layers))
        self.out = nn.Conv1d(channels, 2, 1)
        self.kernel_size = int(kernel_size)
        self.register_buffer("lf0_mean", torch.tensor(float(lf0_mean)))
        self.register_buffer("lf0_scale", torch.tensor(float(lf0_scale)))
        self.f0_min, self.f0_max = float(f0_min), float(f0_max)

    @property
    def context_frames(self) -> int:
        """Frames on each side that one prediction depends on."""
        return len(self.layers) * (self.kernel_size // 2)

    def set_statistics(self, lf0_mean: float, lf0_scale: float) -> None:
        self.lf0_mean.fill_(float(lf0_mean))
        self.lf0_scale.fill_(float(lf0_scale))

    def forward(self, mel: torch.Tensor):
        h = mel
        for conv, norm in zip(self.layers, self.norms):
            h = F.leaky_relu(norm(conv(h)), 0.1)
        out = self.out(h)
        return out[:, 0], out[:, 1]

    def loss(self, mel: torch.Tensor, f0: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """``L1(lf0) over voiced frames + BCE(voicing)`` against a tracked F0 ``(B, frames)``."""
        lf0, logit = self(mel)
        target, voiced = f0_to_target(f0.to(lf0.dtype), float(self.lf0_mean), float(self.lf0_scale))
        vf = voiced.to(lf0.dtype)
        l_f0 = ((lf0 - target).abs() * vf).sum() / vf.sum().clamp_min(1.0)
        l_vuv = F.binary_cross_entropy_with_logits(logit, vf)
        with torch.no_grad():
            err = ((logit > 0) != voiced).to(lf0.dtype).mean()
        return l_f0 + l_vuv, {"f0_l1": float(l_f0.detach()), "vuv_bce": float(l_vuv.detach()),
                              "vuv_err": float(err)}

    def predict_f0(self, mel: torch.Tensor) -> torch.Tensor:
        """F0 in Hz ``(B, frames)``, ``0`` where unvoiced."""
        lf0, logit = self(mel)
        f0 = torch.exp(lf0 * self.lf0_scale + self.lf0_mean).clamp(self.f0_min, self.f0_max)
        return torch.where(logit > 0, f0, torch.zeros_like(f0))
