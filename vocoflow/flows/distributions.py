"""Base distributions for flows: ``Normal`` (with sigma), ``Logistic`` and the heavy-tailed
``StudentT`` and ``GaussianCopula``; the elementwise Gaussian log-density :func:`gaussian_log_prob` that every Gaussian
likelihood in vocoflow uses, the Student-t functions, and the registry
:data:`BASE_DISTRIBUTIONS` through which configs choose a base (:func:`build_base`)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vocoflow.registry import ClassChoices

from .base import sum_except_batch

__all__ = ["Normal", "Logistic", "StudentT", "GaussianCopula", "gaussian_log_prob", "student_t_log_prob",
           "student_t_tail", "student_t_to_normal", "student_t_from_normal", "student_t_sample",
           "BASE_DISTRIBUTIONS", "build_base"]

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


# -- Student-t helpers ----------------------------------------------------------------------------

def _as_df(df, like: torch.Tensor) -> torch.Tensor:
    return df.to(like) if isinstance(df, torch.Tensor) else torch.tensor(float(df), dtype=like.dtype,
                                                                          device=like.device)


def student_t_log_prob(x: torch.Tensor, df, log_scale=0.0) -> torch.Tensor:
    """Elementwise ``log t_df(x; 0, exp(log_scale))`` (location 0; broadcasting; no reduction).

    ``df`` (degrees of freedom, > 0) and ``log_scale`` are tensors or numbers.

    >>> import torch
    >>> x = torch.tensor([0.0, 1.5])
    >>> ref = torch.distributions.StudentT(3.0).log_prob(x)
    >>> bool(torch.allclose(student_t_log_prob(x, 3.0), ref))
    True
    """
    df = _as_df(df, x)
    ls = log_scale if isinstance(log_scale, torch.Tensor) else torch.tensor(float(log_scale),
                                                                            dtype=x.dtype, device=x.device)
    u = x * torch.exp(-ls)
    return (torch.lgamma((df + 1) / 2) - torch.lgamma(df / 2) - 0.5 * torch.log(math.pi * df)
            - (df + 1) / 2 * torch.log1p(u * u / df) - ls)


def _betainc_cf(a, b, x, iters: int = 300):
    """The continued fraction of the regularised incomplete beta ``I_x(a, b)`` (modified Lentz),
    accurate for ``x < (a + 1) / (a + b + 2)``; float64 tensors of one shape."""
    tiny = 1e-300

    def guard(v):
        return torch.where(v.abs() < tiny, torch.full_like(v, tiny), v)

    c = torch.ones_like(x)
    d = 1 / guard(1 - (a + b) * x / (a + 1))
    h = d.clone()
    for m in range(1, iters + 1):
        m2 = 2 * m
        aa = m * (b - m) * x / ((a - 1 + m2) * (a + m2))
        d = 1 / guard(1 + aa * d)
        c = guard(1 + aa / c)
        h = h * d * c
        aa = -(a + m) * (a + b + m) * x / ((a + m2) * (a + 1 + m2))
        d = 1 / guard(1 + aa * d)
        c = guard(1 + aa / c)
        step = d * c
        h = h * step
        if m % 4 == 0 and bool(((step - 1).abs() < 1e-15).all()):
            break
    return h


def _log_betainc(a, b, x):
    """``log I_x(a, b)`` for float64 tensors ``x`` in ``(0, 1)`` where the continued fraction
    converges (``x < (a + 1) / (a + b + 2)``)."""
    front = (torch.lgamma(a + b) - torch.lgamma(a) - torch.lgamma(b) + a * torch.log(x)
             + b * torch.log1p(-x) - torch.log(a))
    return front + torch.log(_betainc_cf(a, b, x))


def student_t_tail(x: torch.Tensor, df) -> torch.Tensor:
    """``P(T > |x|)`` of a standard Student-t with ``df`` degrees of freedom, computed in float64
    (accurate far into the tails: no ``1 - cdf`` cancellation).

    >>> import torch
    >>> round(float(student_t_tail(torch.tensor([1.0]), 1.0)), 12)   # Cauchy: 1/4
    0.25
    """
    x = x.detach().to(torch.float64).abs()
    v = _as_df(df, x).detach().expand_as(x)
    a, b = v / 2, torch.full_like(x, 0.5)
    w = v / (v + x * x)                     # P(T > |x|) = I_w(v/2, 1/2) / 2
    one_m_w = x * x / (v + x * x)
    direct = w < (a + 1) / (a + b + 2)
    # where the fraction converges for w use it; else I_w(a, b) = 1 - I_{1-w}(b, a): one
    # continued fraction per element, with its own (a, b, x)
    aa, bb = torch.where(direct, a, b), torch.where(direct, b, a)
    xx = torch.where(direct, w, one_m_w).nan_to_num(0.25).clamp_min(1e-300)
    i = torch.exp(_log_betainc(aa, bb, xx))
    out = 0.5 * torch.where(direct, i, 1 - i)
    return torch.where(x == 0, torch.full_like(out, 0.5), out)


class _TToNormal(torch.autograd.Function):
    """``q = Phi^-1(F_t(x))`` with the exact derivative ``f_t(x) / phi(q)`` (not through df)."""

    @staticmethod
    def forward(ctx, x, df):
        tail = student_t_tail(x, df).clamp_min(1e-300)
        q = (-torch.special.ndtri(tail)) * torch.sign(x.detach().to(torch.float64))
        q = q.to(x.dtype)
        ctx.save_for_backward(x, q, df.detach())
        return q

    @staticmethod
    def backward(ctx, grad):
        x, q, df = ctx.saved_tensors
        x64, q64 = x.to(torch.float64), q.to(torch.float64)
        log_ft = student_t_log_prob(x64, df.to(torch.float64))
        dq = torch.exp(log_ft - gaussian_log_prob(q64))
        return grad * dq.to(grad.dtype), None


def student_t_to_normal(x: torch.Tensor, df) -> torch.Tensor:
    """The monotone map ``Phi^-1(F_t(x))`` of a standard Student-t onto a standard normal (the
    Gaussian-copula coordinates), differentiable in ``x``.

    >>> import torch
    >>> x = torch.tensor([-2.0, 0.0, 3.0], dtype=torch.float64)
    >>> bool(torch.allclose(student_t_from_normal(student_t_to_normal(x, 4.0), 4.0), x))
    True
    """
    return _TToNormal.apply(x, df if isinstance(df, torch.Tensor)
                           else torch.tensor(float(df), dtype=torch.float64))


def student_t_from_normal(n: torch.Tensor, df, iters: int | None = None) -> torch.Tensor:
    """``F_t^-1(Phi(n))``: standard normal ``n`` to a standard Student-t draw with ``df`` degrees
    of freedom (inverse-CDF sampling: ``iters`` bisection steps on ``log|t|`` in float64, by
    default 64 for float64 ``n`` (about 1e-12 relative) and 46 otherwise (below float32's
    rounding); exact but slow, one tail evaluation per step; no gradient)."""
    if iters is None:
        iters = 64 if n.dtype == torch.float64 else 46
    n64 = n.detach().to(torch.float64)
    v = _as_df(df, n64).detach()
    target = torch.special.log_ndtr(-n64.abs())   # log P(T > |t|)
    lo = torch.full_like(n64, -60.0)
    hi = torch.full_like(n64, 700.0)
    for _ in range(iters):
        mid = (lo + hi) / 2
        small = torch.log(student_t_tail(torch.exp(mid), v)) > target   # |t| still too small
        lo = torch.where(small, mid, lo)
        hi = torch.where(small, hi, mid)
    return (torch.exp((lo + hi) / 2) * torch.sign(n64)).to(n.dtype)


def student_t_sample(shape, df, generator=None, device=None, dtype=None) -> torch.Tensor:
    """Standard Student-t draws ``n / sqrt(g / df)`` with ``n ~ N(0, 1)`` and ``g ~ chi2(df)``
    (the normal scale mixture), reproducible with ``generator``."""
    n = torch.randn(shape, generator=generator, device=device, dtype=dtype)
    v = _as_df(df, n).detach()
    g = 2 * torch._standard_gamma(torch.broadcast_to(v / 2, n.shape).contiguous(), generator=generator)
    return n * torch.rsqrt(g.clamp_min(torch.finfo(n.dtype).tiny) / v)


def _positive(value, what: str) -> float:
    v = float(value)
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"{what} must be a finite number > 0, got {value!r}")
    return v


def _inv_softplus(v: float) -> float:
    return v + math.log(-math.expm1(-v)) if v < 30 else v


class StudentT(nn.Module):
    """Isotropic Student-t base ``scale * t_df`` with (optionally learnable) degrees of freedom
    ``df``: a heavy-tailed base, since a bi-Lipschitz flow cannot map a light-tailed base onto
    heavy-tailed data (Jaini, Kobyzev, Yu & Brubaker, 2020, "Tails of Lipschitz Triangular
    Flows"; Alexanderson & Henter, 2020, "Robust model training and generalisation with
    Studentising flows").

    ``learn_df``: ``df = softplus(raw)`` is a parameter, so it stays > 0 whatever the optimiser
    does; otherwise it is a fixed buffer. An explicit ``df <= 0`` raises ``ValueError``.
    ``temperature`` at sampling replaces ``scale`` (it multiplies the standard t draws, like
    ``sigma`` of :class:`Normal`); :meth:`sample` draws the normal scale mixture.
    :meth:`from_normal` maps given standard normal noise onto t draws by the inverse CDF (exact
    but slow), so noise handed over as unit normals (e.g. to a vocoder) keeps its meaning.

    >>> import torch
    >>> base = StudentT(df=4.0, learn_df=True)
    >>> z = torch.tensor([[0.0, 1.0]])
    >>> ref = torch.distributions.StudentT(4.0).log_prob(z).sum()
    >>> bool(torch.allclose(base.log_prob(z), ref)), round(base.df.item(), 4)
    (True, 4.0)
    >>> base.sample((2, 3)).shape
    torch.Size([2, 3])
    """

    def __init__(self, df: float = 5.0, learn_df: bool = False, scale: float = 1.0):
        super().__init__()
        raw = torch.tensor(_inv_softplus(_positive(df, "StudentT df")), dtype=torch.float32)
        self.learn_df = bool(learn_df)
        if self.learn_df:
            self.raw_df = nn.Parameter(raw)
        else:
            self.register_buffer("raw_df", raw)
        self.scale = _positive(scale, "StudentT scale")

    @property
    def df(self) -> torch.Tensor:
        """The degrees of freedom, ``softplus(raw_df)`` (always > 0)."""
        return F.softplus(self.raw_df)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return sum_except_batch(student_t_log_prob(z, self.df.to(z.dtype), math.log(self.scale)))

    def from_normal(self, n: torch.Tensor) -> torch.Tensor:
        """Standard normal noise to standard (unit-scale) t draws, elementwise and monotone."""
        return student_t_from_normal(n, self.df.detach())

    def sample(self, shape, temperature: float | None = None, generator=None,
               device=None, dtype=None) -> torch.Tensor:
        """Draw ``shape``; ``temperature`` replaces ``scale`` (it scales the t draws)."""
        s = self.scale if temperature is None else float(temperature)
        return student_t_sample(shape, self.df.detach(), generator, device, dtype) * s

    def extra_repr(self) -> str:
        return f"df={self.df.item():.4g}, learn_df={self.learn_df}, scale={self.scale}"


class GaussianCopula(nn.Module):
    """Gaussian-copula base with heavy-tailed Student-t marginals over the ``channels`` of the
    latent's axis 1 (Laszkiewicz, Lederer & Fischer, 2021, "Copula-based normalizing flows"):
    every marginal is ``scale * t_df``; their dependence is the Gaussian copula of a learnable
    correlation matrix ``R`` (independent along the other axes).

    Density: ``log p(z) = sum_c log t_df(z_c) + log c_R(q)`` with ``q = Phi^-1(F_t(z))`` and
    ``log c_R(q) = -log|R| / 2 - q^T (R^-1 - I) q / 2``. ``R = L L^T`` with ``L`` lower
    triangular, rows normalised to unit length (so ``R`` has a unit diagonal); it starts at the
    identity (independent t marginals, the density of :class:`StudentT`). ``df`` is fixed (> 0;
    ``learn_df`` is refused). Sampling draws ``n ~ N(0, R)`` and maps it by the t quantile
    (exact, slow: bisection); ``temperature`` replaces ``scale``.

    >>> import torch
    >>> cop, t = GaussianCopula(3, df=4.0), StudentT(df=4.0)
    >>> z = torch.randn(2, 3, 5)
    >>> bool(torch.allclose(cop.log_prob(z), t.log_prob(z), atol=1e-4))   # R = I at the start
    True
    >>> cop.sample((2, 3, 5)).shape
    torch.Size([2, 3, 5])
    """

    def __init__(self, channels: int, df: float = 5.0, learn_df: bool = False,
                 learn_correlation: bool = True, scale: float = 1.0):
        super().__init__()
        if isinstance(channels, bool) or int(channels) != channels or int(channels) < 1:
            raise ValueError(f"GaussianCopula channels must be a positive integer, got {channels!r}")
        if learn_df:
            raise ValueError("GaussianCopula: the marginals' df is fixed (learn_df is not supported; "
                             "use base student_t to learn df)")
        self.channels = int(channels)
        self.register_buffer("df", torch.tensor(_positive(df, "GaussianCopula df"), dtype=torch.float64))
        self.scale = _positive(scale, "GaussianCopula scale")
        c = self.channels
        self.offdiag = nn.Parameter(torch.zeros(c, c), requires_grad=bool(learn_correlation))
        self.log_diag = nn.Parameter(torch.zeros(c), requires_grad=bool(learn_correlation))

    def cholesky(self, dtype=None) -> torch.Tensor:
        """The lower-triangular factor ``L`` (unit rows) of the correlation ``R = L L^T``."""
        raw = torch.tril(self.offdiag, -1) + torch.diag(torch.exp(self.log_diag))
        raw = raw if dtype is None else raw.to(dtype)
        return raw / raw.norm(dim=1, keepdim=True)

    def correlation(self) -> torch.Tensor:
        L = self.cholesky()
        return L @ L.T

    def _check(self, z):
        if z.dim() < 2 or z.shape[1] != self.channels:
            raise ValueError(f"GaussianCopula over {self.channels} channels got a latent of shape "
                             f"{tuple(z.shape)} (channels on axis 1)")

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        self._check(z)
        u = z / self.scale
        marg = student_t_log_prob(u, self.df.to(z.dtype)) - math.log(self.scale)
        q = student_t_to_normal(u, self.df).movedim(1, -1)             # (B, ..., C)
        L = self.cholesky(q.dtype)
        y = torch.linalg.solve_triangular(L, q.unsqueeze(-1), upper=False).squeeze(-1)
        log_c = -0.5 * (y * y - q * q).sum(-1) - torch.log(torch.diagonal(L)).sum()
        return sum_except_batch(marg) + sum_except_batch(log_c)

    def from_normal(self, n: torch.Tensor) -> torch.Tensor:
        """Independent standard normals ``(B, C, ...)`` to a unit-scale draw of the copula."""
        self._check(n)
        with torch.no_grad():
            L = self.cholesky(n.dtype)
            corr = (n.movedim(1, -1) @ L.T).movedim(-1, 1)          # N(0, R) across channels
            return student_t_from_normal(corr, self.df)

    def sample(self, shape, temperature: float | None = None, generator=None,
               device=None, dtype=None) -> torch.Tensor:
        s = self.scale if temperature is None else float(temperature)
        n = torch.randn(shape, generator=generator, device=device, dtype=dtype)
        return self.from_normal(n) * s

    def extra_repr(self) -> str:
        return f"channels={self.channels}, df={self.df.item():.4g}, scale={self.scale}"


#: The base distributions configs can name (``base:``); capabilities: ``df`` (takes ``df``),
#: ``learn_df`` (can learn it), ``channels`` (needs the channels of the latent's axis 1).
BASE_DISTRIBUTIONS = ClassChoices("base distribution", default="normal",
                                  capabilities=("df", "learn_df", "channels"))
BASE_DISTRIBUTIONS.register("normal", Normal)
BASE_DISTRIBUTIONS.register("logistic", Logistic)
BASE_DISTRIBUTIONS.register("student_t", StudentT, df=True, learn_df=True)
BASE_DISTRIBUTIONS.register("gaussian_copula", GaussianCopula, df=True, channels=True)


def build_base(name: str | None = None, df: float | None = None, learn_df: bool = False,
               channels: int | None = None) -> nn.Module:
    """The registered base distribution ``name`` (``normal`` when ``None``) at unit scale;
    ``df``/``learn_df`` go to the bases that take degrees of freedom and are refused by the
    others, ``channels`` to those that model the latent's channel axis.

    >>> build_base("student_t", df=3.0, learn_df=True).learn_df
    True
    >>> build_base("normal", learn_df=True)
    Traceback (most recent call last):
        ...
    ValueError: base distribution 'normal' cannot learn degrees of freedom (learn_df needs one of: student_t)
    """
    choice = BASE_DISTRIBUTIONS.get(name)
    kw = {}
    if df is not None:
        if not choice.has("df"):
            raise ValueError(f"base distribution {choice.name!r} has no degrees of freedom (df "
                             f"needs one of: {', '.join(BASE_DISTRIBUTIONS.names(df=True))})")
        kw["df"] = df
    if learn_df:
        if not choice.has("learn_df"):
            raise ValueError(f"base distribution {choice.name!r} cannot learn degrees of freedom "
                             f"(learn_df needs one of: {', '.join(BASE_DISTRIBUTIONS.names(learn_df=True))})")
        kw["learn_df"] = True
    if choice.has("channels"):
        if channels is None:
            raise ValueError(f"base distribution {choice.name!r} needs the number of channels")
        kw["channels"] = int(channels)
    return choice.cls(**kw)
