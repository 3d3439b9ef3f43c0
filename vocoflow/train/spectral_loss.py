"""Spectral losses on audio drawn from a flow vocoder (WG-WaveNet-style training).

Maximum likelihood teaches a flow vocoder the spectral envelope long before it teaches the
harmonics; a reconstruction loss on *samples* drawn through the parallel inverse pass at a
training temperature pushes the sampler directly towards the target spectrum (Hsu & Lee, 2020,
"WG-WaveNet"). :class:`SampleSpectralLoss` is the sum of a multi-resolution STFT loss
(spectral convergence + log magnitude, :class:`~vocoflow.train.losses.MultiResolutionSTFTLoss`)
and an L1 distance of log-mel spectrograms computed with the vocoder's own front end.

>>> import torch
>>> from vocoflow.audio import MelConfig
>>> loss = SampleSpectralLoss(MelConfig.from_dict({"preset": "asterisk16k"}))
>>> x = torch.randn(2, 4096) * 0.1
>>> total, parts = loss(x, x)
>>> float(total), sorted(parts)
(0.0, ['logmag', 'mel_l1', 'sc'])
"""

from __future__ import annotations

import torch
from torch import nn

from vocoflow.audio import MelConfig, MelSpectrogram

from .losses import MultiResolutionSTFTLoss, stft_resolutions

__all__ = ["SampleSpectralLoss"]


class SampleSpectralLoss(nn.Module):
    """``stft_weight * MR-STFT(gen, real) + mel_weight * L1(logmel(gen), logmel(real))``.

    ``features``: the vocoder's :class:`~vocoflow.audio.MelConfig` (the mel term uses it, in its
    own log base); ``resolutions``: STFT ``(n_fft, hop, win)`` list, by default three scaled to
    the sample rate. Returns ``(loss, {"sc", "logmag", "mel_l1"})``.
    """

    def __init__(self, features: MelConfig, stft_weight: float = 1.0, mel_weight: float = 1.0,
                 resolutions=None):
        super().__init__()
        self.stft = MultiResolutionSTFTLoss(resolutions or stft_resolutions(features.sample_rate))
        self.mel = MelSpectrogram(features)
        self.stft_weight = float(stft_weight)
        self.mel_weight = float(mel_weight)

    def forward(self, generated: torch.Tensor, real: torch.Tensor):
        gen, ref = generated.float(), real.float()
        total, parts = self.stft(gen, ref)
        total = total * self.stft_weight
        if self.mel_weight:
            l1 = (self.mel(gen) - self.mel(ref)).abs().mean()
            total = total + self.mel_weight * l1
            parts["mel_l1"] = float(l1.detach())
        return total, parts
