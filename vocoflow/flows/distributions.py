"""Base distributions for flows: ``Normal`` (with sigma) and ``Logistic``, and the elementwise
Gaussian log-density :func:`gaussian_log_prob` that every Gaussian likelihood in vocoflow uses."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import sum_except_batch

__all__ = ["Normal", "Logistic", "gaussian_log_prob"]

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def gaussian_log_prob(x: torch.Tensor, mean=0.0, log_scale=0.0) -> torch.Tensor:
    """Elementwise ``log N(x; mean, exp(log_scale)^2)`` (broadcasting; no reduction).

    ``mean`` and ``log_scale`` are tensors or numbers. A numeric ``log_scale`` divides by the
    scale ``exp(log_scale)``; a tensor one multiplies by ``exp(-log_scale)``.

    >>> import torch
    >>> round(gaussian_log_prob(torch.zeros(1)).item(), 6)            # -log(2 pi) / 2
    -0.918939
    >>> x, mu, ls = torch.tensor([0.3]), torch.tensor([0.1]), torch.tensor([-1.0])
    >>> ref = torch.distributions.Normal(mu, ls.exp()).log_prob(x)
    >>> bool(torch.allclose(gaussian_log_prob(x, mu, ls), ref))
    True
    """
    d = x if isinstance(mean, (int, float)) and mean == 0 else x - mean
    if isinstance(log_scale, torch.Tensor):
        return -0.5 * (d * torch.exp(-log_scale)) ** 2 - log_scale - _HALF_LOG_2PI
    log_scale = float(log_scale)
    return -0.5 * (d / math.exp(log_scale)) ** 2 - log_scale - _HALF_LOG_2PI


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
        return sum_except_batch(gaussian_log_prob(z, log_scale=math.log(self.sigma)))

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
