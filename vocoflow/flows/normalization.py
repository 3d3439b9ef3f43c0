"""Per-channel (ActNorm) and per-element (NICE ``Scale``) scaling layers."""

from __future__ import annotations

import torch
from torch import nn

from .base import Bijector
from .linear import spatial_size

__all__ = ["ActNorm", "Scale"]


class ActNorm(Bijector):
    """Activation normalisation (Glow): ``z = (x + bias) * exp(log_scale)`` per channel.

    On the first forward call in training mode the parameters are set from that batch so that
    ``z`` has zero mean and unit variance per channel (data-dependent initialisation). The
    ``initialized`` flag is a buffer, so it travels with ``state_dict``; a loaded model is not
    re-initialised. An uninitialised layer used in the inverse direction acts as the identity.

    >>> import torch
    >>> norm = ActNorm(3)
    >>> z, ld = norm(torch.randn(8, 3, 50) * 4 + 2)
    >>> bool(z.mean(dim=(0, 2)).abs().max() < 1e-5), bool(norm.initialized)
    (True, True)
    """

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.channels = channels
        self.eps = eps
        self.bias = nn.Parameter(torch.zeros(channels))
        self.log_scale = nn.Parameter(torch.zeros(channels))
        self.register_buffer("initialized", torch.tensor(False))

    def _view(self, p, x):
        return p.reshape(1, -1, *([1] * (x.dim() - 2))).to(x.dtype)

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        """Set bias and scale from a batch ``x`` (zero mean, unit variance per channel)."""
        dims = [0] + list(range(2, x.dim()))
        mean = x.mean(dim=dims)
        std = x.std(dim=dims, unbiased=False) if x.numel() > x.shape[1] else torch.ones_like(mean)
        self.bias.copy_(-mean)
        self.log_scale.copy_(-torch.log(std + self.eps))
        self.initialized.fill_(True)

    def _logdet(self, x):
        return (self.log_scale.sum() * spatial_size(x)).expand(x.shape[0]).to(x.dtype)

    def forward(self, x, cond=None):
        if x.shape[1] != self.channels:
            raise ValueError(f"ActNorm built for {self.channels} channels, got {tuple(x.shape)}")
        if not bool(self.initialized) and self.training:
            self.initialize(x)
        z = (x + self._view(self.bias, x)) * torch.exp(self._view(self.log_scale, x))
        return z, self._logdet(x)

    def inverse(self, z, cond=None):
        if z.shape[1] != self.channels:
            raise ValueError(f"ActNorm built for {self.channels} channels, got {tuple(z.shape)}")
        x = z * torch.exp(-self._view(self.log_scale, z)) - self._view(self.bias, z)
        return x, -self._logdet(z)


class Scale(Bijector):
    """NICE's diagonal scaling layer ``z = x * exp(s)`` (Dinh et al., 2014).

    ``shape`` is the shape of ``s`` without the batch dim: ``(C,)`` shares a scale over all
    positions of a channel; ``(C, T)`` or ``(C, H, W)`` (or ``(D,)`` for vectors) gives one per
    element, as in NICE, where ``exp(-s)`` plays the role of the prior's standard deviations.

    >>> import torch
    >>> s = Scale((4,))
    >>> s(torch.ones(2, 4, 3))[1].tolist()   # zero-initialised: identity, logdet 0
    [0.0, 0.0]
    """

    def __init__(self, shape: int | tuple[int, ...]):
        super().__init__()
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        self.log_scale = nn.Parameter(torch.zeros(shape))

    def _expanded(self, x):
        s = self.log_scale
        if x.shape[1 : 1 + s.dim()] != s.shape:
            raise ValueError(f"Scale of shape {tuple(s.shape)} does not fit input {tuple(x.shape)}")
        return s.reshape(1, *s.shape, *([1] * (x.dim() - 1 - s.dim()))).to(x.dtype)

    def _logdet(self, x):
        repeat = 1
        for n in x.shape[1 + self.log_scale.dim():]:
            repeat *= n
        return (self.log_scale.sum() * repeat).expand(x.shape[0]).to(x.dtype)

    def forward(self, x, cond=None):
        return x * torch.exp(self._expanded(x)), self._logdet(x)

    def inverse(self, z, cond=None):
        return z * torch.exp(-self._expanded(z)), -self._logdet(z)
