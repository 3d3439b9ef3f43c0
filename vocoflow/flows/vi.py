"""Flows for variational inference: planar and radial flows (Rezende & Mohamed, 2015) and the
inverse autoregressive flow step of :mod:`.autoregressive` applied to flat vectors.

These layers act on ``(B, D)`` vectors. Their explicit, cheap direction is ``forward``: in
variational inference it is the *sampling* direction ``z_k = f_k(z_{k-1})`` of the posterior,
with ``log q_K(z_K) = log q_0(z_0) - sum_k log|det df_k/dz_{k-1}|``. Planar and radial flows
have no closed-form inverse; their ``inverse`` solves it numerically (a safeguarded 1-D Newton
solve for the planar flow, a closed-form radius for the radial flow) so that the density of a
fitted posterior can still be evaluated at any point.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .autoregressive import IAF
from .base import Bijector, NonConvergenceError

__all__ = ["PlanarFlow", "RadialFlow", "VectorIAF"]


def _check_vector(x: torch.Tensor, dim: int, name: str) -> None:
    if x.dim() != 2 or x.shape[1] != dim:
        raise ValueError(f"{name} built for (B, {dim}) vectors, got {tuple(x.shape)}")


def _vector(value, dim: int, what: str, layer: str) -> torch.Tensor:
    t = torch.as_tensor(value, dtype=torch.get_default_dtype()).reshape(-1)
    if t.numel() != dim:
        raise ValueError(f"{layer}({dim}): {what} has {t.numel()} elements, expected {dim}")
    return t.clone()


class PlanarFlow(Bijector):
    """Planar flow ``f(z) = z + u_hat * tanh(w . z + b)`` (Rezende & Mohamed, "Variational
    Inference with Normalizing Flows", ICML 2015, eqs. 10-12 and appendix A.1).

    ``log|det df/dz| = log|1 + (1 - tanh^2(w . z + b)) w . u_hat|``. The map is invertible
    when ``w . u_hat >= -1``. With ``reparametrize=True`` (default) ``u`` is unconstrained and
    the paper's appendix gives ``u_hat = u + (m(w . u) - w . u) w / |w|^2`` with
    ``m(x) = -1 + log(1 + e^x)``, so ``w . u_hat = m(w . u) > -1`` always. With
    ``reparametrize=False`` ``u_hat = u`` and a violated constraint is a ``ValueError``, at
    construction (explicit ``u``, ``w``) and at every call (after training).

    ``inverse`` has no closed form: along ``w`` the map reads ``alpha -> alpha + (w . u_hat)
    tanh(alpha + b)`` (``alpha = w . z``), which is strictly increasing under the constraint
    and moves ``alpha`` by at most ``|w . u_hat|``; the root inside that bracket is found by
    Newton steps safeguarded by bisection, then ``z = y - u_hat tanh(alpha + b)``. The last
    Newton step runs with autograd, so gradients through ``inverse`` are the implicit ones.
    ``NonConvergenceError`` if ``max_iter`` steps do not reach the tolerance.

    >>> import torch
    >>> f = PlanarFlow(2, u=[1.0, 0.5], w=[2.0, -1.0], b=0.3).double()
    >>> z = torch.randn(5, 2, dtype=torch.float64)
    >>> y, ld = f(z)
    >>> z2, ld2 = f.inverse(y)
    >>> bool(torch.allclose(z2, z, atol=1e-12)), bool(torch.allclose(ld2, -ld))
    (True, True)
    """

    def __init__(self, dim: int, reparametrize: bool = True, u=None, w=None, b=None,
                 init_std: float = 0.1, max_iter: int = 100):
        super().__init__()
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"PlanarFlow: dim must be a positive integer, got {dim!r}")
        self.dim = dim
        self.reparametrize = bool(reparametrize)
        self.max_iter = int(max_iter)
        self.u = nn.Parameter(torch.randn(dim) * init_std if u is None
                              else _vector(u, dim, "u", "PlanarFlow"))
        self.w = nn.Parameter(torch.randn(dim) * init_std if w is None
                              else _vector(w, dim, "w", "PlanarFlow"))
        self.b = nn.Parameter(torch.zeros(()) if b is None
                              else torch.as_tensor(float(b), dtype=torch.get_default_dtype()))
        if not self.reparametrize:
            self._check_constraint()

    def _check_constraint(self) -> None:
        wu = float(torch.dot(self.w.detach(), self.u.detach()))
        if not wu >= -1.0:
            raise ValueError(f"PlanarFlow is not invertible: w . u = {wu:.6g} < -1 (use "
                             "reparametrize=True, or choose u and w with w . u >= -1)")

    def u_hat(self) -> torch.Tensor:
        """The effective ``u`` (``u`` itself without the reparametrisation)."""
        if not self.reparametrize:
            self._check_constraint()
            return self.u
        wu = torch.dot(self.w, self.u)
        m = -1.0 + F.softplus(wu)
        return self.u + (m - wu) * self.w / torch.dot(self.w, self.w).clamp_min(1e-30)

    def forward(self, x, cond=None):
        _check_vector(x, self.dim, "PlanarFlow")
        u = self.u_hat().to(x.dtype)
        w, b = self.w.to(x.dtype), self.b.to(x.dtype)
        h = torch.tanh(x @ w + b)
        y = x + h[:, None] * u
        return y, torch.log1p((1 - h * h) * torch.dot(w, u))

    def inverse(self, z, cond=None):
        _check_vector(z, self.dim, "PlanarFlow")
        u = self.u_hat().to(z.dtype)
        w, b = self.w.to(z.dtype), self.b.to(z.dtype)
        wu = torch.dot(w, u)
        target = z @ w
        alpha = self._solve(target.detach(), float(wu.detach()), float(b.detach()))
        # one Newton step with autograd: the root's value is unchanged, its gradient is the
        # implicit-function one
        t = torch.tanh(alpha + b)
        alpha = alpha - (alpha + wu * t - target) / (1 + wu * (1 - t * t))
        h = torch.tanh(alpha + b)
        x = z - h[:, None] * u
        return x, -torch.log1p((1 - h * h) * wu)

    @torch.no_grad()
    def _solve(self, target: torch.Tensor, wu: float, b: float) -> torch.Tensor:
        """The root of ``g(a) = a + wu tanh(a + b) - target`` (increasing in ``a``)."""
        spread = abs(wu)
        lo, hi = target - spread, target + spread
        a = target - wu * torch.tanh(target + b)  # a good first guess
        a = a.clamp(lo, hi)
        tol = 16 * torch.finfo(target.dtype).eps * (1 + target.abs() + spread)
        for _ in range(self.max_iter):
            t = torch.tanh(a + b)
            res = a + wu * t - target
            done = (res.abs() <= tol) | (hi - lo <= tol)
            if bool(done.all()):
                return a
            lo = torch.where(res < 0, a, lo)
            hi = torch.where(res > 0, a, hi)
            slope = 1 + wu * (1 - t * t)
            step = a - res / slope
            inside = (step > lo) & (step < hi) & torch.isfinite(step)
            a = torch.where(done, a, torch.where(inside, step, 0.5 * (lo + hi)))
        raise NonConvergenceError(f"PlanarFlow.inverse: root finding did not converge in "
                                  f"{self.max_iter} steps (w . u_hat = {wu:.6g})")


class RadialFlow(Bijector):
    """Radial flow ``f(z) = z + beta h(alpha, r) (z - z0)``, ``h = 1 / (alpha + r)``,
    ``r = |z - z0|`` (Rezende & Mohamed, "Variational Inference with Normalizing Flows",
    ICML 2015, eqs. 14 and appendix A.2).

    ``log|det df/dz| = (D - 1) log(1 + beta h) + log(1 + beta h + beta h'(r) r)``, with
    ``1 + beta h + beta h' r = 1 + alpha beta / (alpha + r)^2``. ``alpha > 0`` (stored as its
    log) and the map is invertible when ``beta >= -alpha``. With ``reparametrize=True``
    (default) ``beta`` is unconstrained and the appendix's ``beta_hat = -alpha + log(1 +
    e^beta)`` is used; with ``reparametrize=False`` ``beta_hat = beta`` and ``beta < -alpha``
    is a ``ValueError`` (at construction and at every call).

    ``inverse``: the radius ``r`` of the preimage solves ``r (1 + beta / (alpha + r)) = r'``
    with ``r' = |y - z0|``, the one non-negative root of ``r^2 + (alpha + beta - r') r -
    alpha r' = 0`` (computed without cancellation); the direction of ``y - z0`` is kept and
    ``z = z0 + (y - z0) / (1 + beta / (alpha + r))``.

    >>> import torch
    >>> f = RadialFlow(2, z0=[0.5, -1.0], alpha=0.7, beta=2.0, reparametrize=False).double()
    >>> z = torch.randn(5, 2, dtype=torch.float64)
    >>> y, ld = f(z)
    >>> z2, ld2 = f.inverse(y)
    >>> bool(torch.allclose(z2, z, atol=1e-12)), bool(torch.allclose(ld2, -ld))
    (True, True)
    """

    def __init__(self, dim: int, reparametrize: bool = True, z0=None, alpha=None, beta=None,
                 init_std: float = 0.1):
        super().__init__()
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"RadialFlow: dim must be a positive integer, got {dim!r}")
        self.dim = dim
        self.reparametrize = bool(reparametrize)
        if alpha is not None and not float(alpha) > 0:
            raise ValueError(f"RadialFlow: alpha must be > 0, got {alpha!r}")
        self.z0 = nn.Parameter(torch.randn(dim) * init_std if z0 is None
                               else _vector(z0, dim, "z0", "RadialFlow"))
        log_alpha = 0.0 if alpha is None else math.log(float(alpha))
        self.log_alpha = nn.Parameter(torch.tensor(log_alpha, dtype=torch.get_default_dtype()))
        beta = float(torch.randn(()) * init_std) if beta is None else float(beta)
        self.beta = nn.Parameter(torch.tensor(beta, dtype=torch.get_default_dtype()))
        if not self.reparametrize:
            self._check_constraint()

    def _check_constraint(self) -> None:
        alpha, beta = float(self.log_alpha.detach().exp()), float(self.beta.detach())
        if not beta >= -alpha:
            raise ValueError(f"RadialFlow is not invertible: beta = {beta:.6g} < -alpha = "
                             f"{-alpha:.6g} (use reparametrize=True, or choose beta >= -alpha)")

    def alpha_beta(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The effective ``(alpha, beta_hat)``."""
        alpha = self.log_alpha.exp()
        if not self.reparametrize:
            self._check_constraint()
            return alpha, self.beta
        return alpha, -alpha + F.softplus(self.beta)

    def _logdet(self, alpha, beta, r):
        bh = beta / (alpha + r)
        return ((self.dim - 1) * torch.log1p(bh)
                + torch.log1p(alpha * beta / (alpha + r) ** 2))

    def forward(self, x, cond=None):
        _check_vector(x, self.dim, "RadialFlow")
        alpha, beta = (p.to(x.dtype) for p in self.alpha_beta())
        d = x - self.z0.to(x.dtype)
        r = torch.linalg.vector_norm(d, dim=1)
        y = x + (beta / (alpha + r))[:, None] * d
        return y, self._logdet(alpha, beta, r)

    def inverse(self, z, cond=None):
        _check_vector(z, self.dim, "RadialFlow")
        alpha, beta = (p.to(z.dtype) for p in self.alpha_beta())
        d = z - self.z0.to(z.dtype)
        rp = torch.linalg.vector_norm(d, dim=1)
        c = alpha + beta - rp
        disc = torch.sqrt(c * c + 4 * alpha * rp)
        # the non-negative root, in the form that does not cancel for either sign of c
        r = torch.where(c > 0, 2 * alpha * rp / (c + disc).clamp_min(1e-300), 0.5 * (disc - c))
        x = self.z0.to(z.dtype) + d / (1 + beta / (alpha + r))[:, None]
        return x, -self._logdet(alpha, beta, r)


class VectorIAF(Bijector):
    """One inverse autoregressive flow step (Kingma et al., "Improved Variational Inference
    with Inverse Autoregressive Flow", NeurIPS 2016) on ``(B, D)`` vectors: the :class:`IAF`
    layer of :mod:`vocoflow.flows` run over the ``D`` elements as a length-``D`` sequence
    (``reverse=True`` reverses the autoregressive order, to alternate between steps).

    ``forward`` is the IAF's parallel sampling pass ``y_i = z_i s_i(z_<i) + m_i(z_<i)`` (what
    a posterior needs); ``inverse`` is its sequential solve (``D`` network passes). The
    conditioner's output layer is zero-initialised, so a new step is the identity.

    >>> import torch
    >>> f = VectorIAF(3, hidden=8).double()
    >>> torch.nn.init.normal_(f.iaf.net.end.weight, std=0.3)  # doctest: +ELLIPSIS
    Parameter...
    >>> z = torch.randn(4, 3, dtype=torch.float64)
    >>> y, ld = f(z)
    >>> z2, ld2 = f.inverse(y)
    >>> bool(torch.allclose(z2, z, atol=1e-10)), bool(torch.allclose(ld2, -ld))
    (True, True)
    """

    def __init__(self, dim: int, reverse: bool = False, hidden: int = 32, n_layers: int = 2,
                 kernel_size: int = 2, map: str = "affine"):
        super().__init__()
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"VectorIAF: dim must be a positive integer, got {dim!r}")
        self.dim = dim
        self.reverse = bool(reverse)
        self.iaf = IAF(1, map=map, hidden=hidden, n_layers=n_layers, kernel_size=kernel_size)

    def _seq(self, x):
        s = x[:, None, :]
        return s.flip(-1) if self.reverse else s

    def _vec(self, s):
        return (s.flip(-1) if self.reverse else s)[:, 0, :]

    def forward(self, x, cond=None):
        _check_vector(x, self.dim, "VectorIAF")
        y, ld = self.iaf.inverse(self._seq(x))
        return self._vec(y), ld

    def inverse(self, z, cond=None):
        _check_vector(z, self.dim, "VectorIAF")
        x, ld = self.iaf.forward(self._seq(z))
        return self._vec(x), ld
