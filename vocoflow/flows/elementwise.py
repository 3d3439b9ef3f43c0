"""Elementwise monotone maps, written once and shared by couplings and autoregressive flows.

A map takes an input tensor ``x`` and a parameter tensor ``params`` of shape
``(B, n_params * C, *rest)`` (the raw output of a conditioner network, split into
``n_params`` chunks along dim 1) and returns ``(y, logabsdet)`` where ``logabsdet`` is the
*elementwise* ``log|dy/dx|`` (same shape as ``x``). ``inverse`` solves ``y -> x`` and returns
the elementwise ``log|dx/dy|``. With all-zero parameters every map is the identity, so a
conditioner with a zero-initialised last layer gives an identity layer.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import NonConvergenceError

__all__ = [
    "ElementwiseMap",
    "ShiftMap",
    "AffineMap",
    "MixLogisticMap",
    "ChainMap",
    "mixlogistic_logcdf",
    "mixlogistic_logpdf",
    "make_map",
]


def split_params(params: torch.Tensor, n: int) -> tuple[torch.Tensor, ...]:
    if params.shape[1] % n:
        raise ValueError(f"parameter tensor has {params.shape[1]} channels, not a multiple of {n}")
    return params.chunk(n, dim=1)


class ElementwiseMap(nn.Module):
    """Base class: ``n_params`` parameters per transformed element."""

    n_params: int = 1

    def forward(self, x, params):  # pragma: no cover
        raise NotImplementedError

    def inverse(self, y, params):  # pragma: no cover
        raise NotImplementedError


class ShiftMap(ElementwiseMap):
    """``y = x + t`` (NICE's additive coupling law). Volume preserving."""

    n_params = 1

    def forward(self, x, params):
        return x + params, torch.zeros_like(x)

    def inverse(self, y, params):
        return y - params, torch.zeros_like(y)


class AffineMap(ElementwiseMap):
    """``y = x * s + t`` (RealNVP / WaveGlow) with a numerically safe scale.

    ``scale`` chooses how the raw value ``h`` becomes ``log s``:

    * ``"exp"``: ``log s = h`` (WaveGlow; unbounded),
    * ``"softclamp"``: ``log s = c * tanh(h / c)`` (bounded in ``(-c, c)``, smooth; default),
    * ``"sigmoid"``: ``s = 2 * sigmoid(h)`` (Glow-like, ``s`` in ``(0, 2)``).

    All three give ``s = 1`` at ``h = 0``. Parameter chunks are ``(h, t)``.
    """

    n_params = 2

    def __init__(self, scale: str = "softclamp", clamp: float = 5.0):
        super().__init__()
        if scale not in ("exp", "softclamp", "sigmoid"):
            raise ValueError(f"unknown scale parametrisation {scale!r}")
        self.scale = scale
        self.clamp = float(clamp)

    def log_scale(self, h: torch.Tensor) -> torch.Tensor:
        if self.scale == "exp":
            return h
        if self.scale == "softclamp":
            return self.clamp * torch.tanh(h / self.clamp)
        return math.log(2.0) + F.logsigmoid(h)

    def forward(self, x, params):
        h, t = split_params(params, 2)
        log_s = self.log_scale(h)
        return x * torch.exp(log_s) + t, log_s

    def inverse(self, y, params):
        h, t = split_params(params, 2)
        log_s = self.log_scale(h)
        return (y - t) * torch.exp(-log_s), -log_s


def _mix_parts(params: torch.Tensor, k: int):
    """Split Flow++ parameters into (logits, means, log_scales, a, b)."""
    c = params.shape[1] // (3 * k + 2)
    if params.shape[1] != c * (3 * k + 2):
        raise ValueError(
            f"mixture-of-logistics parameters need {3 * k + 2} per element, "
            f"got {params.shape[1]} channels"
        )
    rest = params.shape[2:]
    p = params.reshape(params.shape[0], 3 * k + 2, c, *rest)
    logits, means, log_scales = p[:, :k], p[:, k : 2 * k], p[:, 2 * k : 3 * k]
    a, b = p[:, 3 * k], p[:, 3 * k + 1]
    return logits, means, log_scales, a, b


def mixlogistic_logcdf(x, logits, means, log_scales):
    """``log CDF`` and ``log (1 - CDF)`` of a logistic mixture; mixture on dim 1."""
    u = (x.unsqueeze(1) - means) * torch.exp(-log_scales)
    logw = torch.log_softmax(logits, dim=1)
    log_c = torch.logsumexp(logw + F.logsigmoid(u), dim=1)
    log_1mc = torch.logsumexp(logw + F.logsigmoid(-u), dim=1)
    return log_c, log_1mc


def mixlogistic_logpdf(x, logits, means, log_scales):
    u = (x.unsqueeze(1) - means) * torch.exp(-log_scales)
    logw = torch.log_softmax(logits, dim=1)
    return torch.logsumexp(logw + F.logsigmoid(u) + F.logsigmoid(-u) - log_scales, dim=1)


class MixLogisticMap(ElementwiseMap):
    """Flow++'s non-affine law: ``y = exp(a) * logit(MixLogCDF(x; pi, mu, s)) + b``.

    ``K`` components give ``3K + 2`` parameters per element, ordered as chunks
    ``(logits[K], means[K], log_scales[K], a, b)``; component log-scales are clamped below at
    ``min_log_scale`` and ``a`` is soft-clamped to ``(-max_log_a, max_log_a)``. The inverse solves
    the monotone equation by vectorised bisection on the exact bracket ``[min_k(mu_k + s_k w), max_k(mu_k + s_k w)]``
    (``w`` the logit target) until every interval is narrower than ``tol`` (absolute, or
    relative to ``|x|`` where ``|x| > 1``), else :class:`NonConvergenceError` after ``max_iter``
    halvings. ``tol`` defaults to 1e-12 in float64 and 1e-6 in float32.
    Ho et al., "Flow++" (2019).
    """

    def __init__(self, n_components: int = 4, tol: float | None = None, max_iter: int = 200,
                 min_log_scale: float = -7.0, max_log_a: float = 5.0):
        super().__init__()
        self.max_log_a = float(max_log_a)
        self.k = int(n_components)
        self.n_params = 3 * self.k + 2
        self.tol = tol
        self.max_iter = int(max_iter)
        self.min_log_scale = float(min_log_scale)

    def _parts(self, params):
        logits, means, log_scales, a, b = _mix_parts(params, self.k)
        log_scales = log_scales.clamp(min=self.min_log_scale)
        # bounded, smooth log-scale of the outer affine map (0 stays 0: identity at init)
        a = self.max_log_a * torch.tanh(a / self.max_log_a)
        return logits, means, log_scales, a, b

    def forward(self, x, params):
        logits, means, log_scales, a, b = self._parts(params)
        log_c, log_1mc = mixlogistic_logcdf(x, logits, means, log_scales)
        y = torch.exp(a) * (log_c - log_1mc) + b
        logdet = mixlogistic_logpdf(x, logits, means, log_scales) - log_c - log_1mc + a
        return y, logdet

    def inverse(self, y, params):
        logits, means, log_scales, a, b = self._parts(params)
        w = (y - b) * torch.exp(-a)
        with torch.no_grad():
            cand = means + torch.exp(log_scales) * w.unsqueeze(1)
            lo = cand.min(dim=1).values
            hi = cand.max(dim=1).values
            tol = self.tol if self.tol is not None else (1e-12 if y.dtype == torch.float64 else 1e-6)
            # Widen by the tolerance so that round-off at the ends stays inside the bracket.
            lo = lo - tol
            hi = hi + tol
            def excess():  # interval width over the (relative for |x| > 1) tolerance
                scale = torch.maximum(torch.ones_like(lo), torch.maximum(lo.abs(), hi.abs()))
                return ((hi - lo) / (tol * scale)).max().item()

            for _ in range(self.max_iter):
                if excess() <= 1.0:
                    break
                mid = 0.5 * (lo + hi)
                log_c, log_1mc = mixlogistic_logcdf(mid, logits, means, log_scales)
                below = (log_c - log_1mc) < w
                lo = torch.where(below, mid, lo)
                hi = torch.where(below, hi, mid)
            else:
                if excess() > 1.0:
                    raise NonConvergenceError(
                        f"mixture-of-logistics bisection: interval {(hi - lo).max().item():.3g} "
                        f"wider than tol {tol:.3g} (relative where |x| > 1) after "
                        f"{self.max_iter} iterations"
                    )
            x0 = 0.5 * (lo + hi)
        # One Newton step carrying gradients: the value moves by at most ~tol, and the
        # gradients w.r.t. y and the parameters are those of the implicit function theorem.
        y0, logdet = self.forward(x0, params)
        step = (y0 - y) * torch.exp(-logdet.detach())
        width = (hi - lo).to(step.dtype)
        x = x0 - torch.clamp(step, min=-width, max=width)
        return x, -logdet


class ChainMap(ElementwiseMap):
    """Composition of elementwise monotone maps, applied left to right: ``y = f_n(...f_1(x))``.

    The parameters are the maps' parameter chunks one after another; the log-derivatives add.
    Monotone maps compose to a monotone map, so e.g. ``ChainMap([MixLogisticMap(), AffineMap()])``
    is a non-affine law with an explicit final scale and shift.

    >>> import torch
    >>> m = ChainMap([MixLogisticMap(2), AffineMap()]).double()
    >>> x, p = torch.randn(3, 1, 5).double(), torch.randn(3, m.n_params, 5).double()
    >>> y, ld = m(x, p)
    >>> x2, ld2 = m.inverse(y, p)
    >>> bool(torch.allclose(x2, x, atol=1e-9)), bool(torch.allclose(ld, -ld2))
    (True, True)
    """

    def __init__(self, maps):
        super().__init__()
        self.maps = nn.ModuleList(maps)
        self.n_params = sum(m.n_params for m in self.maps)

    def _chunks(self, params):
        if params.shape[1] % self.n_params:
            raise ValueError(f"parameter tensor has {params.shape[1]} channels, not a multiple "
                             f"of {self.n_params}")
        c = params.shape[1] // self.n_params
        out, off = [], 0
        for m in self.maps:
            out.append(params[:, off * c:(off + m.n_params) * c])
            off += m.n_params
        return out

    def forward(self, x, params):
        total = torch.zeros_like(x)
        for m, p in zip(self.maps, self._chunks(params)):
            x, ld = m.forward(x, p)
            total = total + ld
        return x, total

    def inverse(self, y, params):
        total = torch.zeros_like(y)
        for m, p in reversed(list(zip(self.maps, self._chunks(params)))):
            y, ld = m.inverse(y, p)
            total = total + ld
        return y, total


def make_map(kind: str, **kwargs) -> ElementwiseMap:
    """Build a map by name: ``"additive"``/``"shift"``, ``"affine"``, ``"mixlogistic"``."""
    kind = kind.lower()
    if kind in ("additive", "shift"):
        return ShiftMap()
    if kind == "affine":
        return AffineMap(**kwargs)
    if kind in ("mixlogistic", "flowpp", "mixture"):
        return MixLogisticMap(**kwargs)
    raise ValueError(f"unknown elementwise map {kind!r} (additive, affine, mixlogistic)")
