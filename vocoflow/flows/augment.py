"""Noise augmentation of an intermediate representation: DenseFlow's cross-unit coupling.

Unlike every other layer in :mod:`vocoflow.flows` this one is *not* a bijection of its input:
it appends new dimensions drawn from a conditional density ``q(e' | x)``. Its log-"determinant"
is therefore defined as ``-log q(e' | x)``, so that summing it with the log-determinants of the
bijectors that follow and the base log-density yields the variational (augmented) lower bound

    ``log p(x) >= E_{e' ~ q(. | x)} [ log p([x, e']) - log q(e' | x) ]``

(Huang, Dinh & Courville, 2020, "Augmented Normalizing Flows"; Grcic, Grubisic & Segvic, 2021,
"Densely connected normalizing flows").
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .base import Bijector, sum_except_batch
from .conditioners import ConvNet
from .distributions import gaussian_log_prob

__all__ = ["CrossUnitAugment"]

ConditionerFactory = Callable[[int, int, int], nn.Module]


class CrossUnitAugment(Bijector):
    """Cross-unit coupling (Grcic, Grubisic & Segvic, 2021, "Densely connected normalizing
    flows", section 3.1): append ``aug_channels`` channels of Gaussian noise preconditioned on
    the current representation.

    ``e ~ N(0, I)`` with ``aug_channels`` channels and the spatial shape of ``x``;
    ``(mu, h) = net(x, cond)``; ``sigma = exp(max_log_sigma * tanh(h / max_log_sigma))``;
    ``e' = mu + sigma * e``; the output is ``cat([x, e'], dim=1)``. The density of the appended
    channels is ``log q(e' | x) = sum log N(e; 0, I) - sum log sigma``.

    Contract (not a bijection of ``x`` alone):

    * ``forward(x, cond=None, noise=None) -> (cat([x, e']), -log q(e' | x))``, shape ``(B,)``.
      ``noise`` is ``e`` (shape ``(B, aug_channels, *x.shape[2:])``); when ``None`` it is drawn
      with ``torch.randn`` (from ``generator`` when one is set, else torch's global generator).
      Added to the log-determinants of the following bijectors and the base log-density, it
      gives one sample of the augmented lower bound on ``log p(x)`` (the bound is exact in
      expectation only when ``q(e' | x)`` is the model's own ``p(e' | x)``).
    * ``inverse(z, cond=None) -> (z[:, :C], log q(e' | x))``: drops the appended channels
      exactly; the returned term is the forward one with the sign flipped, evaluated at
      ``x = z[:, :C]`` and ``e' = z[:, C:]`` (the Bijector convention "inverse log-det is minus
      the forward one at the matching point").

    Args:
        channels: channels ``C`` of the input (dim 1).
        aug_channels: channels appended (``> 0``).
        conditioner: a module ``net(x, cond) -> 2 * aug_channels`` channels or a factory
            ``f(in_channels, out_channels, cond_channels) -> module``. Default: a
            zero-initialised :class:`ConvNet` (``hidden``, ``n_layers``, ``kernel_size``,
            ``ndim``), so the layer starts with ``e' = e``.
        max_log_sigma: soft bound on ``|log sigma|``.

    >>> import torch
    >>> aug = CrossUnitAugment(2, 3, ndim=1, hidden=8)
    >>> x = torch.randn(4, 2, 5)
    >>> z, neg_log_q = aug(x)
    >>> z.shape, neg_log_q.shape, torch.equal(aug.inverse(z)[0], x)
    (torch.Size([4, 5, 5]), torch.Size([4]), True)
    """

    def __init__(self, channels: int, aug_channels: int,
                 conditioner: nn.Module | ConditionerFactory | None = None,
                 cond_channels: int = 0, hidden: int = 64, n_layers: int = 3,
                 kernel_size: int = 3, ndim: int = 1, max_log_sigma: float = 5.0):
        super().__init__()
        if int(channels) != channels or channels <= 0:
            raise ValueError(f"CrossUnitAugment: channels must be a positive integer, got {channels!r}")
        if int(aug_channels) != aug_channels or aug_channels <= 0:
            raise ValueError(f"CrossUnitAugment: aug_channels must be a positive integer, got {aug_channels!r}")
        if not max_log_sigma > 0:
            raise ValueError(f"CrossUnitAugment: max_log_sigma must be positive, got {max_log_sigma!r}")
        self.channels = int(channels)
        self.aug_channels = int(aug_channels)
        self.max_log_sigma = float(max_log_sigma)
        self.generator: torch.Generator | None = None
        out = 2 * self.aug_channels
        if conditioner is None:
            conditioner = ConvNet(self.channels, out, cond_channels, hidden=hidden,
                                  n_layers=n_layers, kernel_size=kernel_size, ndim=ndim)
        elif not isinstance(conditioner, nn.Module):
            conditioner = conditioner(self.channels, out, cond_channels)
        self.net = conditioner

    def extra_repr(self) -> str:
        return f"{self.channels} + {self.aug_channels} channels"

    def _check(self, x, channels):
        if x.dim() < 2 or x.shape[1] != channels:
            raise ValueError(f"CrossUnitAugment expects {channels} channels in dim 1, got input "
                             f"of shape {tuple(x.shape)}")

    def params(self, x: torch.Tensor, cond: torch.Tensor | None = None):
        """``(mu, log_sigma)`` of ``q(e' | x)``, each ``(B, aug_channels, *x.shape[2:])``."""
        out = self.net(x, cond)
        want = (x.shape[0], 2 * self.aug_channels, *x.shape[2:])
        if tuple(out.shape) != want:
            raise ValueError(f"CrossUnitAugment conditioner produced {tuple(out.shape)}, "
                             f"expected {want}")
        mu, h = out.chunk(2, dim=1)
        return mu, self.max_log_sigma * torch.tanh(h / self.max_log_sigma)

    def log_q(self, x: torch.Tensor, e_aug: torch.Tensor, cond=None) -> torch.Tensor:
        """``log q(e' | x)`` per batch item."""
        mu, log_sigma = self.params(x, cond)
        return sum_except_batch(gaussian_log_prob(e_aug, mu, log_sigma))

    def forward(self, x, cond=None, noise=None):
        self._check(x, self.channels)
        shape = (x.shape[0], self.aug_channels, *x.shape[2:])
        if noise is None:
            noise = torch.randn(shape, generator=self.generator, device=x.device, dtype=x.dtype)
        elif tuple(noise.shape) != shape:
            raise ValueError(f"CrossUnitAugment noise must have shape {shape}, got {tuple(noise.shape)}")
        mu, log_sigma = self.params(x, cond)
        e_aug = mu + torch.exp(log_sigma) * noise
        log_q = sum_except_batch(gaussian_log_prob(noise) - log_sigma)
        return torch.cat([x, e_aug], dim=1), -log_q

    def inverse(self, z, cond=None):
        self._check(z, self.channels + self.aug_channels)
        x, e_aug = z[:, : self.channels], z[:, self.channels:]
        return x, self.log_q(x, e_aug, cond)
