"""Convolutional conditioners for image couplings: RealNVP's residual network and Glow's
three-layer network.

Both follow the conditioner protocol of :mod:`vocoflow.flows`: built by a factory
``f(in_channels, out_channels, cond_channels) -> module``, called as ``net(x, cond)``, and with a
zero-initialised output so the coupling they drive starts as the identity. ``cond`` (optional) is
concatenated to the input (a global ``(B, Cc)`` condition is broadcast over space).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ResNetConditioner", "GlowConditioner", "ZeroConv2d", "resnet_factory", "glow_factory"]


def _with_cond(x: torch.Tensor, cond: torch.Tensor | None, cond_channels: int) -> torch.Tensor:
    if not cond_channels:
        return x
    if cond is None:
        raise ValueError("this conditioner was built with cond_channels > 0: pass cond")
    if cond.dim() == 2:
        cond = cond[:, :, None, None].expand(-1, -1, *x.shape[2:])
    return torch.cat([x, cond.to(x.dtype)], dim=1)


class ZeroConv2d(nn.Module):
    """A 3x3 convolution initialised to zero whose output is scaled by ``exp(3 * logs)``
    per channel (Glow's ``Conv2dZeros``; Kingma & Dhariwal, 2018).

    >>> import torch
    >>> ZeroConv2d(2, 4)(torch.randn(1, 2, 5, 5)).detach().abs().max().item()
    0.0
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 logscale_factor: float = 3.0):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)
        self.logs = nn.Parameter(torch.zeros(out_channels, 1, 1))
        self.logscale_factor = float(logscale_factor)

    def forward(self, x):
        return self.conv(x) * torch.exp(self.logs * self.logscale_factor)


class _ResBlock(nn.Module):
    def __init__(self, channels: int, kernel_size: int):
        super().__init__()
        pad = kernel_size // 2
        self.conv1 = nn.Conv2d(channels, channels, kernel_size, padding=pad)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size, padding=pad)
        # start each block close to the identity (a common residual-network initialisation)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, h):
        return h + self.conv2(F.relu(self.conv1(F.relu(h))))


class ResNetConditioner(nn.Module):
    """RealNVP's coupling network (Dinh, Sohl-Dickstein & Bengio, 2017, "Density estimation
    using Real NVP"): an input 3x3 convolution, ``n_blocks`` residual blocks of two 3x3
    convolutions (pre-activation ReLU), ReLU and a zero-initialised 3x3 output convolution.

    Normalisation layers are left out on purpose: the paper's batch normalisation makes one
    item's output depend on the rest of the batch, which breaks per-item log-determinants in
    training mode; the residual blocks start as the identity instead (zero-initialised second
    convolution), which keeps a deep stack stable without it.

    >>> import torch
    >>> net = ResNetConditioner(2, 8, hidden=16, n_blocks=2)
    >>> out = net(torch.randn(3, 2, 6, 6))
    >>> out.shape, float(out.detach().abs().max())
    (torch.Size([3, 8, 6, 6]), 0.0)
    """

    def __init__(self, in_channels: int, out_channels: int, cond_channels: int = 0,
                 hidden: int = 64, n_blocks: int = 2, kernel_size: int = 3):
        super().__init__()
        self.cond_channels = cond_channels
        self.inp = nn.Conv2d(in_channels + cond_channels, hidden, kernel_size,
                             padding=kernel_size // 2)
        self.blocks = nn.ModuleList(_ResBlock(hidden, kernel_size) for _ in range(n_blocks))
        self.out = nn.Conv2d(hidden, out_channels, kernel_size, padding=kernel_size // 2)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x, cond=None):
        h = self.inp(_with_cond(x, cond, self.cond_channels))
        for block in self.blocks:
            h = block(h)
        return self.out(F.relu(h))


class GlowConditioner(nn.Module):
    """Glow's coupling network (Kingma & Dhariwal, 2018, "Glow: Generative Flow with Invertible
    1x1 Convolutions"): 3x3 convolution, ReLU, 1x1 convolution, ReLU, then a zero-initialised
    3x3 :class:`ZeroConv2d` (``hidden`` = 512 in the paper).

    >>> import torch
    >>> net = GlowConditioner(2, 4, hidden=8)
    >>> float(net(torch.randn(1, 2, 4, 4)).detach().abs().max())
    0.0
    """

    def __init__(self, in_channels: int, out_channels: int, cond_channels: int = 0,
                 hidden: int = 512, kernel_size: int = 3):
        super().__init__()
        self.cond_channels = cond_channels
        self.conv1 = nn.Conv2d(in_channels + cond_channels, hidden, kernel_size,
                               padding=kernel_size // 2)
        self.conv2 = nn.Conv2d(hidden, hidden, 1)
        self.out = ZeroConv2d(hidden, out_channels, kernel_size)

    def forward(self, x, cond=None):
        h = F.relu(self.conv1(_with_cond(x, cond, self.cond_channels)))
        return self.out(F.relu(self.conv2(h)))


def resnet_factory(hidden: int = 64, n_blocks: int = 2, kernel_size: int = 3):
    """A conditioner factory ``f(in, out, cond) -> ResNetConditioner`` for the couplings."""
    return functools.partial(_make_resnet, hidden=hidden, n_blocks=n_blocks,
                             kernel_size=kernel_size)


def _make_resnet(in_channels, out_channels, cond_channels, **kw):
    return ResNetConditioner(in_channels, out_channels, cond_channels, **kw)


def glow_factory(hidden: int = 512, kernel_size: int = 3):
    """A conditioner factory ``f(in, out, cond) -> GlowConditioner`` for the couplings."""
    return functools.partial(_make_glow, hidden=hidden, kernel_size=kernel_size)


def _make_glow(in_channels, out_channels, cond_channels, **kw):
    return GlowConditioner(in_channels, out_channels, cond_channels, **kw)
