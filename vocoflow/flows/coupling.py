"""Coupling layers: one part of the input conditions an elementwise map of the other part.

Additive (NICE), affine (RealNVP) and mixture-of-logistics (Flow++) couplings differ only in
the :mod:`~vocoflow.flows.elementwise` map; the partition is a channel split or, for images (and
alternating samples), a checkerboard mask.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .base import Bijector, sum_except_batch
from .conditioners import ConvNet
from .elementwise import AffineMap, ElementwiseMap, MixLogisticMap, ShiftMap

__all__ = ["Coupling", "AdditiveCoupling", "AffineCoupling", "MixLogisticCoupling"]

ConditionerFactory = Callable[[int, int, int], nn.Module]


def checkerboard(shape: tuple[int, ...], parity: int, device=None, dtype=None) -> torch.Tensor:
    """A ``(1, 1, *shape)`` 0/1 mask, 1 where the index sum has the given parity."""
    grids = torch.meshgrid(*[torch.arange(n, device=device) for n in shape], indexing="ij")
    total = sum(grids) if grids else torch.zeros((), device=device, dtype=torch.long)
    return ((total % 2) == parity).to(dtype).reshape(1, 1, *shape)


class Coupling(Bijector):
    """Generic coupling: ``x_b' = map(x_b; net(x_a, cond))``, ``x_a' = x_a``.

    Args:
        channels: number of input channels ``C`` (dim 1).
        map: the elementwise map (:class:`ShiftMap`, :class:`AffineMap`,
            :class:`MixLogisticMap`, ...).
        mask: ``"channel"`` (split channels into halves; ``parity`` 0 keeps the first half
            fixed, 1 the second) or ``"checkerboard"`` (spatial alternating mask; ``parity``
            chooses which squares are fixed).
        conditioner: a module ``net(x_a, cond) -> params`` or a factory
            ``f(in_channels, out_channels, cond_channels) -> module``. Default: a zero-initialised
            :class:`ConvNet` with ``hidden`` channels and ``ndim`` spatial dims.
        cond_channels: channels of the optional conditioning tensor.
    """

    def __init__(self, channels: int, map: ElementwiseMap, mask: str = "channel",
                 parity: int = 0, conditioner: nn.Module | ConditionerFactory | None = None,
                 cond_channels: int = 0, hidden: int = 64, n_layers: int = 3,
                 kernel_size: int = 3, ndim: int = 1):
        super().__init__()
        if mask not in ("channel", "checkerboard"):
            raise ValueError(f"mask must be 'channel' or 'checkerboard', not {mask!r}")
        if mask == "channel" and channels < 2:
            raise ValueError("a channel-split coupling needs at least 2 channels")
        self.channels = channels
        self.map = map
        self.mask = mask
        self.parity = int(parity) % 2
        if mask == "channel":
            half = channels // 2
            self.n_fixed = half if self.parity == 0 else channels - half
            in_ch, out_ch = self.n_fixed, (channels - self.n_fixed) * map.n_params
        else:
            in_ch, out_ch = channels, channels * map.n_params
        if conditioner is None:
            conditioner = ConvNet(in_ch, out_ch, cond_channels, hidden=hidden,
                                  n_layers=n_layers, kernel_size=kernel_size, ndim=ndim)
        elif not isinstance(conditioner, nn.Module):
            conditioner = conditioner(in_ch, out_ch, cond_channels)
        self.net = conditioner

    # -- partition helpers -------------------------------------------------------------
    def _split(self, x):
        c = self.n_fixed
        if self.parity == 0:
            return x[:, :c], x[:, c:]
        return x[:, self.channels - c:], x[:, : self.channels - c]

    def _join(self, fixed, moved):
        return torch.cat([fixed, moved] if self.parity == 0 else [moved, fixed], dim=1)

    def _mask(self, x):
        return checkerboard(tuple(x.shape[2:]), self.parity, device=x.device, dtype=x.dtype)

    def _check(self, x):
        if x.shape[1] != self.channels:
            raise ValueError(f"{type(self).__name__} built for {self.channels} channels, "
                             f"got input of shape {tuple(x.shape)}")

    # -- directions ----------------------------------------------------------------------
    def _couple(self, x, cond, inverse: bool):
        self._check(x)
        step = self.map.inverse if inverse else self.map.forward
        if self.mask == "channel":
            fixed, moved = self._split(x)
            params = self.net(fixed, cond)
            moved, ld = step(moved, params)
            return self._join(fixed, moved), sum_except_batch(ld)
        m = self._mask(x)
        fixed = x * m
        params = self.net(fixed, cond)
        y, ld = step(x, params)
        return fixed + (1 - m) * y, sum_except_batch(ld * (1 - m))

    def forward(self, x, cond=None):
        return self._couple(x, cond, inverse=False)

    def inverse(self, z, cond=None):
        return self._couple(z, cond, inverse=True)


class AdditiveCoupling(Coupling):
    """NICE's additive coupling ``x_b' = x_b + t(x_a, cond)`` (Dinh et al., 2014).

    Volume preserving: the log-determinant is zero.

    >>> import torch
    >>> layer = AdditiveCoupling(4)
    >>> x = torch.randn(2, 4, 8)
    >>> z, ld = layer(x)
    >>> bool((z == x).all()), ld.tolist()   # zero-initialised: the identity
    (True, [0.0, 0.0])
    """

    def __init__(self, channels: int, **kwargs):
        super().__init__(channels, ShiftMap(), **kwargs)


class AffineCoupling(Coupling):
    """RealNVP's affine coupling ``x_b' = x_b * s(x_a) + t(x_a)`` (Dinh et al., 2017).

    ``scale`` selects the parametrisation of ``s`` (see :class:`AffineMap`): ``"softclamp"``
    (default), ``"exp"`` (WaveGlow) or ``"sigmoid"``.

    >>> import torch
    >>> layer = AffineCoupling(4, cond_channels=3)
    >>> x, c = torch.randn(2, 4, 8), torch.randn(2, 3, 8)
    >>> z, ld = layer(x, c)
    >>> torch.allclose(layer.inverse(z, c)[0], x)
    True
    """

    def __init__(self, channels: int, scale: str = "softclamp", clamp: float = 5.0, **kwargs):
        super().__init__(channels, AffineMap(scale, clamp), **kwargs)


class MixLogisticCoupling(Coupling):
    """Flow++'s non-affine coupling (Ho et al., 2019): a mixture-of-logistics CDF, a logit,
    then an affine map, with ``n_components`` mixture components per element.

    The inverse is a vectorised bisection (see :class:`MixLogisticMap`).

    >>> import torch
    >>> layer = MixLogisticCoupling(2, n_components=3).double()
    >>> x = torch.randn(2, 2, 5, dtype=torch.float64)
    >>> with torch.no_grad():
    ...     z, ld = layer(x)
    ...     back = layer.inverse(z)[0]
    >>> float((back - x).abs().max()) < 1e-9
    True
    """

    def __init__(self, channels: int, n_components: int = 4, tol: float | None = None,
                 **kwargs):
        super().__init__(channels, MixLogisticMap(n_components, tol=tol), **kwargs)
