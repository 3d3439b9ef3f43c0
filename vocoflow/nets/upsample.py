"""Frame-rate to sample-rate upsampling of mel spectrograms, with exact lengths."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MelUpsampler"]


class MelUpsampler(nn.Module):
    """Upsample ``(B, n_mels, frames)`` to ``(B, n_mels, frames * hop)`` exactly.

    * ``mode="transpose"``: WaveGlow's learned transposed convolution (Prenger et al., 2019,
      "WaveGlow"), ``n_mels -> n_mels``, stride ``hop``, kernel ``kernel_size`` (default
      ``4 * hop``: 1024 for hop 256, as in WaveGlow). Its output of length
      ``(frames - 1) * hop + kernel_size`` is cut to the ``frames * hop`` samples centred on the
      frames: frame ``t``'s kernel is centred on samples ``[t * hop, (t + 1) * hop)``, which is
      where :mod:`vocoflow.audio.mel` centres frame ``t`` (so no half-kernel misalignment).
      ``crop="start"`` keeps the first ``frames * hop`` samples instead (NVIDIA's WaveGlow
      ``infer`` drops the last ``kernel_size - hop``; its mels are centred on ``t * hop``).
    * ``mode="repeat"``: each frame repeated ``hop`` times (no parameters).

    >>> import torch
    >>> up = MelUpsampler(80, hop=256)
    >>> up(torch.randn(2, 80, 7)).shape
    torch.Size([2, 80, 1792])
    >>> MelUpsampler(3, 4, mode="repeat")(torch.arange(2.).reshape(1, 1, 2).expand(1, 3, 2))[0, 0].tolist()
    [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]
    """

    #: values per intermediate GEMM result of the transposed convolution (bounds its memory)
    block_values: int = 1 << 22

    def __init__(self, n_mels: int, hop: int, mode: str = "transpose", kernel_size: int | None = None,
                 crop: str = "center"):
        super().__init__()
        if mode not in ("transpose", "repeat"):
            raise ValueError(f"upsampler mode must be 'transpose' or 'repeat', got {mode!r}")
        if crop not in ("center", "start"):
            raise ValueError(f"upsampler crop must be 'center' or 'start', got {crop!r}")
        self.crop = crop
        if hop < 1:
            raise ValueError(f"hop must be >= 1, got {hop}")
        self.n_mels, self.hop, self.mode = int(n_mels), int(hop), mode
        if mode == "transpose":
            k = 4 * self.hop if kernel_size is None else int(kernel_size)
            if k < self.hop:
                raise ValueError(f"kernel_size {k} must be >= hop {self.hop}")
            self.kernel_size = k
            self.conv = nn.ConvTranspose1d(self.n_mels, self.n_mels, k, stride=self.hop)
            self.left = (k - self.hop) // 2 if crop == "center" else 0
        else:
            self.kernel_size = 1
            self.conv = None
            self.left = 0

    @property
    def context_frames(self) -> tuple[int, int]:
        """``(before, after)``: frames around frame ``t`` that its samples depend on."""
        if self.conv is None:
            return 0, 0
        return (self.kernel_size - self.left - 1) // self.hop, (self.hop - 1 + self.left) // self.hop

    def macs_per_sample(self) -> float:
        """Multiply-accumulates per output sample (``n_mels**2 * kernel / hop``; 0 for repeat)."""
        if self.conv is None:
            return 0.0
        return self.n_mels * self.n_mels * self.kernel_size / self.hop

    def extra_repr(self) -> str:
        return f"n_mels={self.n_mels}, hop={self.hop}, mode={self.mode!r}, kernel={self.kernel_size}"

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        if mel.dim() != 3 or mel.shape[1] != self.n_mels:
            raise ValueError(f"expected mel (B, {self.n_mels}, frames), got {tuple(mel.shape)}")
        frames = mel.shape[2]
        if self.conv is None:
            return mel.repeat_interleave(self.hop, dim=2)
        if frames == 0:
            return mel.new_zeros(mel.shape[0], self.n_mels, 0)
        w = self.conv.weight  # (n_mels_in, n_mels_out, kernel)
        k, hop, c, b = self.kernel_size, self.hop, self.n_mels, mel.shape[0]
        # transposed convolution = one GEMM (each frame's kernel-long contribution, cut into m
        # hop-long pieces) + overlap-add of the m pieces: several times faster on CPUs than
        # conv_transpose1d (or F.fold) for a kernel this long
        m = -(-k // hop)
        if m * hop != k:
            w = F.pad(w, (0, m * hop - k))
        w2 = w.reshape(c, c * m * hop)
        melt = mel.to(w.dtype).transpose(1, 2)  # (B, frames, c)
        if torch.jit.is_tracing():
            # one GEMM and the overlap-add as m shifted pads: the blocked loop below would bake
            # the traced length into a TorchScript/ONNX graph
            y = torch.matmul(melt, w2).view(b, frames, c, m, hop)
            out = sum(F.pad(y[:, :, :, j], (0, 0, 0, 0, j, m - 1 - j)) for j in range(m))
            out = out.permute(0, 2, 1, 3).reshape(b, c, (frames + m - 1) * hop)
            return out[..., self.left: self.left + frames * hop] + self.conv.bias[:, None]
        out = w.new_zeros(b, frames + m - 1, c, hop)
        step = max(1, self.block_values // (c * m * hop))  # frames per GEMM: bounded memory
        for f0 in range(0, frames, step):
            f1 = min(frames, f0 + step)
            y = torch.matmul(melt[:, f0:f1], w2).view(b, f1 - f0, c, m, hop)
            for j in range(m):
                out[:, f0 + j: f1 + j] += y[:, :, :, j]
        out = out.permute(0, 2, 1, 3).reshape(b, c, (frames + m - 1) * hop)
        out = out[..., self.left: self.left + frames * hop]
        return out + self.conv.bias[:, None]
