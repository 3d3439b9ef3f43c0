"""``Flow``: a base distribution plus a bijector, with log-likelihoods and sampling."""

from __future__ import annotations

import math

import torch
from torch import nn

from .base import Bijector

__all__ = ["Flow"]


class Flow(nn.Module):
    """A normalising flow ``p(x) = p_Z(f(x)) |det df/dx|``.

    * ``log_prob(x, cond)``: exact log-density in nats, shape ``(B,)``.
    * ``nll(x, cond, bits=False)``: mean negative log-likelihood per dimension (nats, or bits
      per dimension with ``bits=True``), averaged over the batch.
    * ``sample(shape, cond, temperature)``: draw a latent of ``shape`` and invert.

    >>> import torch
    >>> from vocoflow.flows import Flow, Normal, Sequential, ActNorm, AffineCoupling
    >>> flow = Flow(Normal(), Sequential(ActNorm(2), AffineCoupling(2)))
    >>> x = torch.randn(16, 2, 10)
    >>> flow.log_prob(x).shape, flow.sample((3, 2, 10)).shape
    (torch.Size([16]), torch.Size([3, 2, 10]))
    """

    def __init__(self, base: nn.Module, bijector: Bijector):
        super().__init__()
        self.base = base
        self.bijector = bijector

    def forward(self, x, cond=None):
        """``(z, logdet)`` of the data-to-latent map."""
        return self.bijector(x, cond)

    def log_prob(self, x, cond=None) -> torch.Tensor:
        z, logdet = self.bijector(x, cond)
        return self.base.log_prob(z) + logdet

    def nll(self, x, cond=None, bits: bool = False) -> torch.Tensor:
        dims = x[0].numel()
        nll = -self.log_prob(x, cond).mean() / dims
        return nll / math.log(2) if bits else nll

    def sample(self, shape, cond=None, temperature: float | None = None, generator=None):
        p = next(self.parameters(), None)
        device = p.device if p is not None else None
        dtype = p.dtype if p is not None else None
        z = self.base.sample(tuple(shape), temperature, generator=generator, device=device,
                             dtype=dtype)
        x, _ = self.bijector.inverse(z, cond)
        return x
