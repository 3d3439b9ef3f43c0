"""The bijector contract and the ways to combine bijectors.

Every layer in :mod:`vocoflow.flows` maps data to latent with ``forward`` and back with
``inverse``; both return the transformed tensor and a per-batch-item log-determinant.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

__all__ = ["Bijector", "Sequential", "Inverse", "sum_except_batch", "NonConvergenceError"]


class NonConvergenceError(RuntimeError):
    """An iterative inverse (fixed point, bisection) did not reach its tolerance."""


def sum_except_batch(x: torch.Tensor) -> torch.Tensor:
    """Sum every dimension but the first: ``(B, ...) -> (B,)``."""
    return x.reshape(x.shape[0], -1).sum(dim=1)


class Bijector(nn.Module):
    """Base class of every invertible layer.

    Contract:

    * ``forward(x, cond=None) -> (z, logdet)``: data to latent, ``logdet = log|det dz/dx|``
      of shape ``(B,)``.
    * ``inverse(z, cond=None) -> (x, logdet)``: latent to data, ``logdet = log|det dx/dz|``,
      which is minus the forward one at the matching point.

    ``cond`` is an optional conditioning tensor that a layer may use or ignore.
    """

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None):  # pragma: no cover
        raise NotImplementedError

    def inverse(self, z: torch.Tensor, cond: torch.Tensor | None = None):  # pragma: no cover
        raise NotImplementedError

    @staticmethod
    def _zero_logdet(x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(x.shape[0])


class Sequential(Bijector):
    """Compose bijectors: ``forward`` runs them in order, ``inverse`` in reverse order.

    The log-determinants add up.

    >>> import torch
    >>> from vocoflow.flows import Sequential, Reverse, ActNorm
    >>> f = Sequential(ActNorm(4), Reverse())
    >>> x = torch.randn(3, 4, 10)
    >>> z, ld = f(x)
    >>> torch.allclose(f.inverse(z)[0], x, atol=1e-5)
    True
    """

    def __init__(self, *bijectors: Bijector | Iterable[Bijector]):
        super().__init__()
        if len(bijectors) == 1 and not isinstance(bijectors[0], nn.Module):
            bijectors = tuple(bijectors[0])
        for b in bijectors:
            if not isinstance(b, Bijector):
                raise TypeError(f"Sequential takes Bijectors, got {type(b).__name__}")
        self.layers = nn.ModuleList(bijectors)

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, i):
        return self.layers[i]

    def forward(self, x, cond=None):
        total = self._zero_logdet(x)
        for layer in self.layers:
            x, ld = layer(x, cond)
            total = total + ld
        return x, total

    def inverse(self, z, cond=None):
        total = self._zero_logdet(z)
        for layer in reversed(self.layers):
            z, ld = layer.inverse(z, cond)
            total = total + ld
        return z, total


class Inverse(Bijector):
    """Swap the directions of a bijector (``Inverse(Squeeze(2))`` unsqueezes).

    >>> import torch
    >>> from vocoflow.flows import Inverse, Squeeze
    >>> Inverse(Squeeze(2))(torch.randn(1, 4, 3))[0].shape
    torch.Size([1, 2, 6])
    """

    def __init__(self, bijector: Bijector):
        super().__init__()
        self.bijector = bijector

    def forward(self, x, cond=None):
        return self.bijector.inverse(x, cond)

    def inverse(self, z, cond=None):
        return self.bijector(z, cond)
