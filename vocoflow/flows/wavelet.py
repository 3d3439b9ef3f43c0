"""Wavelet front ends: the one-level 2-D Haar transform as an orthogonal bijector."""

from __future__ import annotations

import torch
from einops import rearrange

from .base import Bijector

__all__ = ["HaarWavelet"]

# Rows: the four subbands; columns: the pixels (a, b, c, d) of a 2x2 block, a = (0, 0),
# b = (0, 1), c = (1, 0), d = (1, 1). A 4x4 Hadamard matrix over 2: symmetric and orthogonal,
# so it is its own inverse.
_HAAR = [[1.0, 1.0, 1.0, 1.0],     # LL: the block average (times 2)
         [1.0, -1.0, 1.0, -1.0],   # left minus right column
         [1.0, 1.0, -1.0, -1.0],   # top minus bottom row
         [1.0, -1.0, -1.0, 1.0]]   # diagonal


class HaarWavelet(Bijector):
    """One level of the orthonormal 2-D Haar discrete wavelet transform (the front end of
    HiNet, Jing et al., 2021, "HiNet: Deep Image Hiding by Invertible Network", ICCV).

    ``(B, C, H, W) -> (B, 4C, H/2, W/2)``. For each 2x2 block with pixels ``a b / c d``::

        LL = (a + b + c + d) / 2      column detail = (a - b + c - d) / 2
        row detail = (a + b - c - d) / 2      diagonal = (a - b - c + d) / 2

    The output is subband-major: channels ``[0, C)`` hold the LL subband of every input
    channel, then the column-detail, row-detail and diagonal subbands (``C`` channels each).
    The map is orthogonal (log-determinant 0) and the inverse is exact (its transpose).

    >>> import torch
    >>> z, ld = HaarWavelet()(torch.tensor([[[[1., 2.], [3., 4.]]]]))
    >>> z.flatten().tolist(), ld.tolist()
    ([5.0, -1.0, -2.0, 0.0], [0.0])
    >>> x = torch.randn(2, 3, 4, 6)
    >>> torch.allclose(HaarWavelet().inverse(HaarWavelet()(x)[0])[0], x, atol=1e-6)
    True
    """

    def _matrix(self, like: torch.Tensor) -> torch.Tensor:
        return torch.tensor(_HAAR, dtype=like.dtype, device=like.device) / 2.0

    def forward(self, x, cond=None):
        if x.dim() != 4:
            raise ValueError(f"HaarWavelet takes (B, C, H, W) images, got {tuple(x.shape)}")
        if x.shape[2] % 2 or x.shape[3] % 2:
            raise ValueError(f"HaarWavelet: height and width must be even, got "
                             f"{x.shape[2]}x{x.shape[3]}")
        blocks = rearrange(x, "b c (h f1) (w f2) -> b (f1 f2) c h w", f1=2, f2=2)
        bands = torch.einsum("kj,bjchw->bkchw", self._matrix(x), blocks)
        return rearrange(bands, "b k c h w -> b (k c) h w"), self._zero_logdet(x)

    def inverse(self, z, cond=None):
        if z.dim() != 4 or z.shape[1] % 4:
            raise ValueError(f"inverse HaarWavelet takes (B, 4C, H, W), got {tuple(z.shape)}")
        bands = rearrange(z, "b (k c) h w -> b k c h w", k=4)
        # the matrix is symmetric and orthogonal: its transpose (itself) inverts it
        blocks = torch.einsum("jk,bjchw->bkchw", self._matrix(z), bands)
        x = rearrange(blocks, "b (f1 f2) c h w -> b c (h f1) (w f2)", f1=2, f2=2)
        return x, self._zero_logdet(z)
