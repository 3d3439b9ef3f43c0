"""Small default conditioner networks for couplings and autoregressive steps.

A conditioner maps ``(x, cond) -> params``. Its last layer is zero-initialised, so the layer it
drives starts as the identity. Bigger networks (WaveNet-like ``WN``) live in
:mod:`vocoflow.nets`; any module with the same call signature can be plugged in.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ConvNet", "CausalConvNet", "expand_cond"]


def expand_cond(cond: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    """Broadcast a global ``(B, Cc)`` condition over the spatial dims of ``like``."""
    if cond is None:
        return None
    if cond.shape[0] != like.shape[0]:
        raise ValueError(f"cond batch {cond.shape[0]} != input batch {like.shape[0]}")
    if cond.dim() == 2 and like.dim() > 2:
        cond = cond.reshape(*cond.shape, *([1] * (like.dim() - 2))).expand(
            -1, -1, *like.shape[2:]
        )
    elif cond.shape[2:] != like.shape[2:]:
        raise ValueError(
            f"cond spatial shape {tuple(cond.shape[2:])} != input {tuple(like.shape[2:])}"
        )
    return cond


def _conv(ndim: int):
    return {0: None, 1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[ndim]


class ConvNet(nn.Module):
    """``n_layers`` convolutions (or linear layers for ``ndim=0``) with ReLU between.

    ``cond`` (``(B, Cc, *spatial)`` or global ``(B, Cc)``) is concatenated to the input.
    The output layer is zero-initialised.
    """

    def __init__(self, in_channels: int, out_channels: int, cond_channels: int = 0,
                 hidden: int = 64, n_layers: int = 3, kernel_size: int = 3, ndim: int = 1):
        super().__init__()
        self.ndim = ndim
        self.cond_channels = cond_channels
        widths = [in_channels + cond_channels] + [hidden] * (n_layers - 1) + [out_channels]
        layers = []
        for i in range(n_layers):
            k = kernel_size
            if ndim == 0:
                layers.append(nn.Linear(widths[i], widths[i + 1]))
            else:
                layers.append(_conv(ndim)(widths[i], widths[i + 1], k, padding=k // 2))
        self.layers = nn.ModuleList(layers)
        nn.init.zeros_(self.layers[-1].weight)
        nn.init.zeros_(self.layers[-1].bias)

    def forward(self, x, cond=None):
        if self.cond_channels:
            if cond is None:
                raise ValueError("this conditioner was built with cond_channels > 0: pass cond")
            x = torch.cat([x, expand_cond(cond, x)], dim=1)
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class CausalConvNet(nn.Module):
    """A strictly causal stack of dilated 1-D convolutions: output at ``t`` sees inputs ``< t``.

    The input is shifted right by one step, then ``n_layers`` causal convolutions (left padding
    only, dilations ``1, 2, 4, ...``) with gated ``tanh * sigmoid`` units and residual
    connections are applied. ``cond`` (``(B, Cc, T)``, any time) is added to every layer by a
    1x1 convolution. The output layer is zero-initialised.
    """

    def __init__(self, in_channels: int, out_channels: int, cond_channels: int = 0,
                 hidden: int = 64, n_layers: int = 4, kernel_size: int = 3,
                 dilation_cycle: int | None = None):
        super().__init__()
        self.kernel_size = kernel_size
        self.start = nn.Conv1d(in_channels, hidden, 1)
        cycle = dilation_cycle or n_layers
        self.dilations = [2 ** (i % cycle) for i in range(n_layers)]
        self.convs = nn.ModuleList(
            nn.Conv1d(hidden, 2 * hidden, kernel_size, dilation=d) for d in self.dilations
        )
        self.res = nn.ModuleList(nn.Conv1d(hidden, hidden, 1) for _ in self.dilations)
        self.cond_channels = cond_channels
        self.cond = nn.Conv1d(cond_channels, 2 * hidden * n_layers, 1) if cond_channels else None
        self.end = nn.Conv1d(hidden, out_channels, 1)
        nn.init.zeros_(self.end.weight)
        nn.init.zeros_(self.end.bias)

    @property
    def receptive_field(self) -> int:
        return 1 + sum((self.kernel_size - 1) * d for d in self.dilations)

    def forward(self, x, cond=None):
        # shift right by one: position t only sees x[<t]
        h = self.start(F.pad(x, (1, 0))[..., :-1])
        c = None
        if self.cond is not None:
            if cond is None:
                raise ValueError("this conditioner was built with cond_channels > 0: pass cond")
            c = self.cond(expand_cond(cond, x)).chunk(len(self.convs), dim=1)
        for i, (conv, res) in enumerate(zip(self.convs, self.res)):
            pad = (self.kernel_size - 1) * self.dilations[i]
            a = conv(F.pad(h, (pad, 0)))
            if c is not None:
                a = a + c[i]
            ta, sa = a.chunk(2, dim=1)
            h = h + res(torch.tanh(ta) * torch.sigmoid(sa))
        return self.end(h)
