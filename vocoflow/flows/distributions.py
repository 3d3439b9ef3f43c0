"""Base distributions for flows: ``Normal`` (with sigma) and ``Logistic``."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import sum_except_batch

__all__ = ["Normal", "Logistic"]


class Normal(nn.Module):
    """Isotropic Gaussian ``N(0, sigma^2 I)``; WaveGlow trains with ``sigma=1`` and samples at
    a lower temperature (``sigma=0.6``).

    >>> import torch
    >>> round(Normal().log_prob(torch.zeros(1, 2)).item(), 5)   # -log(2 pi)
    -1.83788
    """

    def __init__(self, sigma: float = 1.0):
        super().__init__()
        self.sigma = float(sigma)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        s = self.sigma
        lp = -0.5 * (z / s) ** 2 - math.log(s) - 0.5 * math.log(2 * math.pi)
        return sum_except_batch(lp)

    def sample(self, shape, temperature: float | None = None, generator=None,
               device=None, dtype=None) -> torch.Tensor:
        """Draw ``shape``; ``temperature`` replaces ``sigma`` (e.g. 0.6 at synthesis)."""
        s = self.sigma if temperature is None else float(temperature)
        return torch.randn(shape, generator=generator, device=device, dtype=dtype) * s


class Logistic(nn.Module):
    """Standard logistic distribution (NICE's prior), optionally with a ``scale``.

    >>> import torch
    >>> round(Logistic().log_prob(torch.zeros(1, 1)).item(), 6) == round(-2 * math.log(2), 6)
    True
    """

    def __init__(self, scale: float = 1.0):
        super().__init__()
        self.scale = float(scale)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        u = z / self.scale
        return sum_except_batch(-u - 2 * F.softplus(-u) - math.log(self.scale))

    def sample(self, shape, temperature: float | None = None, generator=None,
               device=None, dtype=None) -> torch.Tensor:
        s = self.scale if temperature is None else float(temperature)
        u = torch.rand(shape, generator=generator, device=device, dtype=dtype)
        u = u.clamp(torch.finfo(u.dtype).tiny, 1 - torch.finfo(u.dtype).eps)
        return (torch.log(u) - torch.log1p(-u)) * s
