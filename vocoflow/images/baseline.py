"""The per-pixel independent categorical baseline: every pixel position gets its own
256-way histogram from the training set (add-one smoothed); bits per dimension are evaluated
on the test set. Any image flow should beat it.
"""

from __future__ import annotations

import math

import torch

__all__ = ["CategoricalBaseline", "categorical_baseline_bpd"]


class CategoricalBaseline:
    """``p_d(v) = (count_d(v) + smoothing) / (N + 256 * smoothing)`` for pixel position ``d``
    and value ``v``, fitted on uint8 images ``(N, C, H, W)``.

    >>> import torch
    >>> train = torch.tensor([[[[0, 255]]], [[[0, 255]]]], dtype=torch.uint8)   # N=2, 1x1x2
    >>> base = CategoricalBaseline(train)
    >>> round(base.bits_per_dim(train), 6) == round(-math.log2(3 / 258), 6)
    True
    """

    def __init__(self, train: torch.Tensor, smoothing: float = 1.0, chunk: int = 4096):
        if train.dtype != torch.uint8 or train.dim() != 4:
            raise ValueError(f"expected uint8 (N, C, H, W) images, got {train.dtype} "
                             f"{tuple(train.shape)}")
        self.image_shape = tuple(train.shape[1:])
        d = math.prod(self.image_shape)
        counts = torch.zeros(d, 256, dtype=torch.float64)
        flat = train.reshape(train.shape[0], d).long()
        for start in range(0, flat.shape[0], chunk):
            part = flat[start:start + chunk]
            counts.scatter_add_(1, part.T.contiguous(), torch.ones(d, part.shape[0], dtype=torch.float64))
        self.n_train = train.shape[0]
        self.smoothing = float(smoothing)
        self.log2_probs = torch.log2(counts + smoothing) - math.log2(self.n_train + 256 * smoothing)

    def per_image_bits(self, images: torch.Tensor) -> torch.Tensor:
        """``-log2 p(x)`` of every image (bits, summed over dimensions)."""
        if tuple(images.shape[1:]) != self.image_shape:
            raise ValueError(f"images of shape {tuple(images.shape[1:])}, baseline fitted on "
                             f"{self.image_shape}")
        flat = images.reshape(images.shape[0], -1).long()
        lp = torch.gather(self.log2_probs.unsqueeze(0).expand(flat.shape[0], -1, -1), 2,
                          flat.unsqueeze(2)).squeeze(2)
        return -lp.sum(1)

    def bits_per_dim(self, images: torch.Tensor, chunk: int = 1024) -> float:
        """Mean bits per dimension over ``images`` (NaN for none)."""
        if images.shape[0] == 0:
            return math.nan
        total = 0.0
        for start in range(0, images.shape[0], chunk):
            total += float(self.per_image_bits(images[start:start + chunk]).sum())
        return total / (images.shape[0] * math.prod(self.image_shape))


def categorical_baseline_bpd(train: torch.Tensor, test: torch.Tensor, smoothing: float = 1.0) -> dict:
    """``{"train_bpd", "test_bpd", ...}`` of the per-pixel categorical model fitted on ``train``."""
    base = CategoricalBaseline(train, smoothing)
    return {"train_bpd": base.bits_per_dim(train), "test_bpd": base.bits_per_dim(test),
            "smoothing": smoothing, "n_train": int(train.shape[0]), "n_test": int(test.shape[0])}
