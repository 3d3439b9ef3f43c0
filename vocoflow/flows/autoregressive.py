"""Inverse autoregressive flow steps (Kingma et al., 2016; Parallel WaveNet; ClariNet)."""

from __future__ import annotations

import torch
from torch import nn

from .base import Bijector, sum_except_batch
from .conditioners import CausalConvNet
from .elementwise import ElementwiseMap, make_map

__all__ = ["IAF"]


class IAF(Bijector):
    """One inverse-autoregressive step over time on ``(B, C, T)`` tensors.

    Sampling (latent to data, :meth:`inverse`) is one parallel pass:
    ``x_t = map(z_t; theta_t)`` with ``theta_t = net(z_{<t}, cond)`` from a strictly causal
    network. The data-to-latent pass (:meth:`forward`) must solve for ``z`` one time step after
    another (``T`` network evaluations): correct but slow, as IAFs are.

    ``map`` is ``"affine"`` (Parallel WaveNet / ClariNet: ``x = z * s + mu``), ``"additive"``,
    ``"mixlogistic"`` (non-affine, Flow++'s CDF law) or any :class:`ElementwiseMap`.
    ``conditioner`` is a causal module ``net(z, cond) -> params`` or a factory
    ``f(in_channels, out_channels, cond_channels)``; the default is :class:`CausalConvNet`.

    >>> import torch
    >>> step = IAF(1, cond_channels=2, hidden=8, n_layers=2).double()
    >>> torch.nn.init.normal_(step.net.end.weight, std=0.1)  # doctest: +ELLIPSIS
    Parameter...
    >>> z, c = torch.randn(2, 1, 12, dtype=torch.float64), torch.randn(2, 2, 12).double()
    >>> with torch.no_grad():
    ...     x, ld = step.inverse(z, c)                      # parallel sampling
    ...     z2, ld2 = step(x, c)                            # sequential
    >>> float((z2 - z).abs().max()) < 1e-9, bool(torch.allclose(ld, -ld2))
    (True, True)
    """

    def __init__(self, channels: int = 1, map: str | ElementwiseMap = "affine",
                 conditioner: nn.Module | None = None, cond_channels: int = 0,
                 hidden: int = 64, n_layers: int = 4, kernel_size: int = 3,
                 map_kwargs: dict | None = None):
        super().__init__()
        self.channels = channels
        self.map = make_map(map, **(map_kwargs or {})) if isinstance(map, str) else map
        out = channels * self.map.n_params
        if conditioner is None:
            conditioner = CausalConvNet(channels, out, cond_channels, hidden=hidden,
                                        n_layers=n_layers, kernel_size=kernel_size)
        elif not isinstance(conditioner, nn.Module):
            conditioner = conditioner(channels, out, cond_channels)
        self.net = conditioner

    def _check(self, x):
        if x.dim() != 3 or x.shape[1] != self.channels:
            raise ValueError(f"IAF built for (B, {self.channels}, T) input, got {tuple(x.shape)}")

    def inverse(self, z, cond=None):
        self._check(z)
        x, ld = self.map.forward(z, self.net(z, cond))
        return x, sum_except_batch(ld)

    def forward(self, x, cond=None):
        self._check(x)
        z = torch.zeros_like(x)
        for t in range(x.shape[-1]):
            params = self.net(z, cond)[..., t : t + 1]
            zt, _ = self.map.inverse(x[..., t : t + 1], params)
            z = torch.cat([z[..., :t], zt, z[..., t + 1:]], dim=-1)
        _, ld = self.map.forward(z, self.net(z, cond))
        return z, -sum_except_batch(ld)
