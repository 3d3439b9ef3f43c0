"""Invertible residual blocks: i-ResNet (Behrmann et al., 2019) and Residual Flows (Chen et al., 2019).

A residual block maps ``z = x + g(x)``. When the residual branch ``g`` is a contraction
(Lipschitz constant ``Lip(g) < 1``) the map is invertible (Banach fixed point:
``x = z - g(x)``) and

    log|det dz/dx| = log det(I + J_g) = sum_{k>=1} (-1)^(k+1) / k * tr(J_g^k),

a power series that converges because the spectral radius of ``J_g`` is below one. This module
holds :class:`ResidualBlock`, the bijector, with exact, truncated-series and unbiased
(Russian-roulette) log-determinants and a fixed-point inverse. Its residual branch is made of
:class:`~vocoflow.flows.lipschitz.SpectralNormLayer` layers (operator norm at most ``coeff``)
and :class:`~vocoflow.flows.lipschitz.LipSwish` activations; the log-determinant estimators
are the functions of :mod:`vocoflow.flows.logdet`.

Truncated-series bias
---------------------
``logdet="series"`` truncates the power series after ``n`` terms. The bias is bounded by
``|bias| <= D * sum_{k>n} L^k / k <= D * L^(n+1) / ((n + 1) * (1 - L))`` with ``D`` the number of
elements per item and ``L`` the product of :meth:`ResidualBlock.lipschitz_bounds`. Measured with
exact traces (``hutchinson="exact"``) on a (1, 3, 5) float64 input, weights scaled up so that every
layer sits at ``coeff = 0.97`` (``tests/test_residual.py`` asserts the decrease and the bound for
the first case):

* one conv layer (``n_layers=1``, so ``g`` is linear; ``||J_g|| = 0.91``, spectral radius 0.81,
  exact log-det -1.22): bias n=1: +1.18, n=2: +0.60, n=4: +0.26, n=8: +0.064, n=10: +0.035,
  n=16: +6.6e-3, n=32: +1.2e-4;
* the default 3 layers (hidden 16; exact log-det -0.0147; ``||J_g|| = 0.04``, because LipSwish
  has slope 0.45 at 0 and the layers' top singular directions do not align): n=1: +2.6e-4,
  n=2: -2.4e-6, n=4: -1.7e-9, n=8: below 1e-15.

So for blocks like the second one the default ``n_series_terms=10`` is exact to rounding; the
bias matters once training drives ``J_g`` towards its bound (check with
:meth:`ResidualBlock.logdet_exact` on small inputs). ``logdet="unbiased"`` removes the bias
altogether at the price of variance.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import Bijector, NonConvergenceError
from .lipschitz import ACTIVATIONS, SpectralNormLayer
from .logdet import (
    PROBES,
    exact_logdet,
    hutchinson_probes,
    neumann_logdet,
    neumann_logdet_grads,
    power_series_logdet,
    russian_roulette_weights,
)

__all__ = ["ResidualBlock"]

_LOGDET_MODES = ("exact", "series", "unbiased")
#: how the log-det estimator is differentiated (``ResidualBlock(logdet_grad=...)``)
LOGDET_GRADS = ("backprop", "neumann", "neumann_memory_efficient")


class ResidualBlock(Bijector):
    """Invertible residual block ``z = x + g(x, cond)`` with ``Lip(g) < 1`` in ``x``.

    i-ResNet: Behrmann, Grathwohl, Chen, Duvenaud, Jacobsen, "Invertible Residual Networks",
    ICML 2019. Residual Flows: Chen, Behrmann, Duvenaud, Jacobsen, "Residual Flows for
    Invertible Generative Modeling", NeurIPS 2019.

    ``g`` is ``n_layers`` spectrally normalised layers (:class:`SpectralNormLayer`, each with
    operator norm ``<= coeff``) with 1-Lipschitz activations (``activation``, below) between
    them, so ``Lip(g) <= coeff ** n_layers < 1``. The first and last layers have
    ``kernel_size`` taps, inner ones are 1x1 (i-ResNet's 3-1-3 pattern). Inputs are ``(B, C)``
    for ``ndim=0``, ``(B, C, T)`` for ``ndim=1`` and ``(B, C, H, W)`` for ``ndim=2``. With
    ``cond_channels > 0`` a conditioning tensor ``(B, cond_channels, *spatial)`` or
    ``(B, cond_channels)`` (broadcast) enters the first layer through its own unnormalised layer
    whose output is added; ``g`` stays a contraction in ``x`` for every fixed ``cond``.

    Log-determinant (``logdet_mode``, settable after construction):

    * ``"exact"``: ``slogdet(I + J_g)`` of the full per-item Jacobian (built with batched
      vector-Jacobian products); only for ``C * prod(spatial) <= brute_force_max_dim``.
    * ``"series"``: ``sum_{k=1}^{n_series_terms} (-1)^(k+1)/k tr(J_g^k)`` (biased; see the module
      docstring for the bias bound and measured values).
    * ``"unbiased"``: Residual Flows' Russian-roulette estimator: the first ``n_exact_terms`` terms
      always, then term ``n_exact_terms + m`` only if ``N >= m`` and divided by
      ``P(N >= m) = (1 - roulette_p) ** m``, with ``N ~ Geometric(roulette_p)`` drawn per item.
      Term ``k`` is of size ``rho^k`` (``rho`` the spectral radius of ``J_g``), so the variance is
      finite only if ``rho^2 < 1 - roulette_p``: with the default 0.5, blocks whose ``rho``
      exceeds 0.7 give heavy-tailed estimates; lower ``roulette_p`` (more terms) for those.

    Traces use ``n_hutchinson`` probe vectors (``hutchinson="rademacher"`` or ``"gaussian"``), or
    ``hutchinson="exact"`` (all basis vectors: exact traces, for tests on small inputs).
    How the estimator is differentiated (``logdet_grad``, settable after construction):

    * ``"backprop"`` (default): backpropagation through every term of the series (its graph,
      one vector-Jacobian product per term, is kept until ``backward``);
    * ``"neumann"`` (also ``neumann_grad=True``): the value without the series' graph, and the
      Neumann-series gradient ``v^T (sum_j (-1)^j c_j J^j) (dJ) v``, which estimates
      ``tr((I + J)^-1 dJ)`` (Residual Flows' memory-saving estimator), through the graph of
      one extra product kept until ``backward``;
    * ``"neumann_memory_efficient"``: the same gradient evaluated during the forward pass
      (Residual Flows' "backward-in-forward", :func:`~vocoflow.flows.logdet.neumann_logdet_grads`),
      so no estimator graph outlives the block's forward: only the gradients (the size of the
      input and of the weights) are kept. Memory then does not grow with the number of terms
      nor with the number of blocks beyond the plain network's activations
      (``benchmarks/bench_logdet_memory.py``). Its weight gradients are those of the *sum* of
      the log-dets, scaled by the incoming gradient, so the loss must weight every item's
      log-det equally (a sum or mean over the batch, as bits/dim training does); ``backward``
      raises ``RuntimeError`` otherwise. Same seed, same draw: identical to ``"neumann"``.

    Residual branch: ``activation`` is a name of
    :data:`~vocoflow.flows.lipschitz.ACTIVATIONS`: ``"lipswish"`` or ``"clipswish"``
    (:class:`~vocoflow.flows.lipschitz.CLipSwish`, which doubles the channels, so each layer
    after it takes ``2 * hidden`` inputs). ``dense=True`` makes ``g`` the dense block of
    i-DenseNets (Perugachi-Diaz, Tomczak, Bhulai, "Invertible DenseNets with Concatenated
    LipSwish", NeurIPS 2021): ``n_layers - 1`` dense layers
    ``h <- concat(eta_1 h, eta_2 act(W h))`` (``W``: ``kernel_size`` taps, ``hidden`` outputs;
    ``(eta_1, eta_2)`` learnable and normalised to unit length, so each layer's Lipschitz
    constant is at most ``sqrt(eta_1^2 + eta_2^2 Lip(W)^2) <= 1``), then a 1x1 layer from the
    grown channels back to ``channels`` (``<= coeff``). :meth:`lipschitz_bound` gives the
    resulting bound on ``Lip(g)`` for either layout.

    Spectral normalisation state: each training-mode forward first runs ``n_power_iterations``
    warm-started power iterations per layer; ``.eval()`` iterates them to convergence and eval-mode
    calls never change them (deterministic). :meth:`lipschitz_bounds` reports exact per-layer
    bounds, :meth:`refresh_spectral_norms` re-converges after weights are edited by hand.
    ``conv_norm`` chooses how wide kernels are normalised (see :mod:`vocoflow.flows.lipschitz`).

    ``inverse`` runs the fixed-point iteration ``x <- z - g(x)`` from ``x = z`` until the largest
    change is below ``inverse_tol * max(1, max|x|)`` (``None``: 1e-10 in float64, 1e-5 in float32)
    or raises :class:`NonConvergenceError` after ``inverse_max_iter`` steps. It is differentiable:
    gradients use the implicit function theorem, ``dx = (I + J_g)^-1 (dz - dg)``, solved by the
    same kind of fixed-point iteration in backward.

    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> block = ResidualBlock(4, hidden=16).double().eval()
    >>> x = torch.randn(2, 4, 8, dtype=torch.float64)
    >>> z, logdet = block(x)
    >>> logdet.shape
    torch.Size([2])
    >>> x_back, inv_logdet = block.inverse(z)
    >>> torch.allclose(x_back, x, atol=1e-8), torch.allclose(inv_logdet, -logdet)
    (True, True)
    >>> block.logdet_mode = "series"
    >>> torch.allclose(block(x)[1], logdet, atol=0.1)
    True
    """

    def __init__(
        self,
        channels: int,
        hidden: int = 64,
        n_layers: int = 3,
        kernel_size: int = 3,
        ndim: int = 1,
        cond_channels: int = 0,
        coeff: float = 0.97,
        logdet: str = "exact",
        n_series_terms: int = 10,
        n_hutchinson: int = 1,
        n_exact_terms: int = 2,
        roulette_p: float = 0.5,
        neumann_grad: bool = False,
        inverse_tol: float | None = None,
        inverse_max_iter: int = 500,
        brute_force_max_dim: int = 1024,
        hutchinson: str = "rademacher",
        n_power_iterations: int = 5,
        conv_norm: str = "frequency",
        activation: str = "lipswish",
        dense: bool = False,
        logdet_grad: str | None = None,
    ):
        super().__init__()
        if ndim not in (0, 1, 2):
            raise ValueError(f"ndim must be 0 (vectors), 1 (B, C, T) or 2 (B, C, H, W), got {ndim}")
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        if not 0.0 < coeff < 1.0:
            raise ValueError(f"coeff must lie in (0, 1) for invertibility, got {coeff}")
        if not 0.0 < roulette_p < 1.0:
            raise ValueError(f"roulette_p must lie in (0, 1), got {roulette_p}")
        if hutchinson not in PROBES:
            raise ValueError(f"hutchinson must be one of {PROBES}, got {hutchinson!r}")
        if n_series_terms < 1 or n_hutchinson < 1 or n_exact_terms < 0:
            raise ValueError("need n_series_terms >= 1, n_hutchinson >= 1, n_exact_terms >= 0")
        if dense and n_layers < 2:
            raise ValueError(f"a dense residual branch needs n_layers >= 2 (dense layers + the final "
                             f"1x1 layer), got {n_layers}")
        if logdet_grad is None:
            logdet_grad = "neumann" if neumann_grad else "backprop"
        elif neumann_grad and logdet_grad == "backprop":
            raise ValueError("neumann_grad=True contradicts logdet_grad='backprop'")
        act_cls = ACTIVATIONS.get(activation).cls
        self.activation, self.dense = activation, bool(dense)
        self.channels, self.hidden, self.ndim = channels, hidden, ndim
        self.kernel_size = 1 if ndim == 0 else kernel_size
        self.cond_channels, self.coeff = cond_channels, float(coeff)
        self.logdet_mode = logdet
        self.n_series_terms, self.n_hutchinson = int(n_series_terms), int(n_hutchinson)
        self.n_exact_terms, self.roulette_p = int(n_exact_terms), float(roulette_p)
        self.logdet_grad, self.hutchinson = logdet_grad, hutchinson
        self.inverse_tol, self.inverse_max_iter = inverse_tol, int(inverse_max_iter)
        self.brute_force_max_dim = int(brute_force_max_dim)

        dims = [channels] + [hidden] * (n_layers - 1) + [channels]
        grow = hidden * act_cls.expansion
        if self.dense:  # in: channels, channels + grow, ...; out: hidden, ..., hidden, channels
            ins = [channels + i * grow for i in range(n_layers)]
            kernels = [self.kernel_size] * (n_layers - 1) + [1]
        else:  # in: channels, grow, ..., grow; out: hidden, ..., hidden, channels
            ins = [channels] + [grow] * (n_layers - 1)
            kernels = [self.kernel_size] + [1] * max(n_layers - 2, 0) + ([self.kernel_size] if n_layers > 1 else [])
        self.layers = nn.ModuleList(
            SpectralNormLayer(
                ins[i], dims[i + 1], kernels[i], ndim, coeff,
                n_power_iterations=n_power_iterations, conv_norm=conv_norm,
            )
            for i in range(n_layers)
        )
        self.acts = nn.ModuleList(act_cls(hidden) for _ in range(n_layers - 1))
        if self.dense:  # raw concatenation weights (eta_1, eta_2) per dense layer, normalised in use
            self.dense_eta = nn.Parameter(torch.ones(n_layers - 1, 2))
        else:
            self.register_parameter("dense_eta", None)
        if cond_channels > 0:
            self.cond_weight = nn.Parameter(
                torch.empty(dims[1], cond_channels, *([self.kernel_size] * ndim))
            )
            nn.init.kaiming_uniform_(self.cond_weight, a=math.sqrt(5))
        else:
            self.register_parameter("cond_weight", None)

    # -- configuration -----------------------------------------------------------------------
    @property
    def logdet_mode(self) -> str:
        return self._logdet_mode

    @logdet_mode.setter
    def logdet_mode(self, mode: str) -> None:
        if mode not in _LOGDET_MODES:
            raise ValueError(f"logdet mode must be one of {_LOGDET_MODES}, got {mode!r}")
        self._logdet_mode = mode

    @property
    def logdet_grad(self) -> str:
        return self._logdet_grad

    @logdet_grad.setter
    def logdet_grad(self, how: str) -> None:
        if how not in LOGDET_GRADS:
            raise ValueError(f"logdet_grad must be one of {LOGDET_GRADS}, got {how!r}")
        self._logdet_grad = how

    @property
    def neumann_grad(self) -> bool:
        """``True`` for either Neumann-series gradient (``logdet_grad != "backprop"``); setting
        ``True`` selects ``"neumann"`` unless a Neumann gradient is already chosen."""
        return self._logdet_grad != "backprop"

    @neumann_grad.setter
    def neumann_grad(self, flag: bool) -> None:
        if not flag:
            self._logdet_grad = "backprop"
        elif self._logdet_grad == "backprop":
            self._logdet_grad = "neumann"

    def extra_repr(self) -> str:
        return (f"logdet={self.logdet_mode!r}, logdet_grad={self.logdet_grad!r}, coeff={self.coeff}, "
                f"activation={self.activation!r}, dense={self.dense}")

    # -- the residual branch -----------------------------------------------------------------
    def _check(self, x: torch.Tensor, cond: torch.Tensor | None) -> None:
        if x.dim() != self.ndim + 2 or x.shape[1] != self.channels:
            want = ("(B, C)", "(B, C, T)", "(B, C, H, W)")[self.ndim]
            raise ValueError(f"expected input {want} with C={self.channels}, got {tuple(x.shape)}")
        if self.cond_channels == 0:
            return
        if cond is None:
            raise ValueError(f"this block needs cond with {self.cond_channels} channels")
        ok = cond.dim() == 2 or (cond.dim() == x.dim() and cond.shape[2:] == x.shape[2:])
        if not ok or cond.shape[0] != x.shape[0] or cond.shape[1] != self.cond_channels:
            raise ValueError(
                f"cond must be (B, {self.cond_channels}) or (B, {self.cond_channels}, *{tuple(x.shape[2:])}) "
                f"with B={x.shape[0]}, got {tuple(cond.shape)}"
            )

    def normalized_weights(self, update: bool = False) -> list[torch.Tensor]:
        """The spectrally normalised weights of ``g`` (power-iterating first if ``update``)."""
        return [layer.normalized_weight(update) for layer in self.layers]

    def _cond_term(self, cond: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        w = self.cond_weight
        if cond.dim() == 2:  # broadcast over space: the kernel summed over its taps
            out = F.linear(cond, w.reshape(w.shape[0], w.shape[1], -1).sum(-1))
            return out.reshape(*out.shape, *([1] * self.ndim))
        conv = F.conv1d if self.ndim == 1 else F.conv2d
        return conv(cond, w, padding=self.kernel_size // 2)

    def _g(self, x: torch.Tensor, cond: torch.Tensor | None, weights: list[torch.Tensor]) -> torch.Tensor:
        if self.dense:
            return self._g_dense(x, cond, weights)
        h = self.layers[0].apply_weight(x, weights[0])
        if self.cond_weight is not None:
            h = h + self._cond_term(cond, x)
        for act, layer, w in zip(self.acts, self.layers[1:], weights[1:]):
            h = layer.apply_weight(act(h), w)
        return h

    def dense_weights(self) -> torch.Tensor:
        """The normalised concatenation weights ``(eta_1, eta_2)`` of each dense layer, rows of
        unit length: ``(n_layers - 1, 2)``."""
        return self.dense_eta / torch.linalg.vector_norm(self.dense_eta, dim=1, keepdim=True)

    def _g_dense(self, x, cond, weights):
        h, etas = x, self.dense_weights()
        for i, (act, layer, w) in enumerate(zip(self.acts, self.layers[:-1], weights[:-1])):
            t = layer.apply_weight(h, w)
            if i == 0 and self.cond_weight is not None:
                t = t + self._cond_term(cond, x)
            h = torch.cat([etas[i, 0] * h, etas[i, 1] * act(t)], dim=1)
        return self.layers[-1].apply_weight(h, weights[-1])

    def residual(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """``g(x, cond)`` with the current normalised weights (no power-iteration update)."""
        self._check(x, cond)
        return self._g(x, cond, self.normalized_weights(update=False))

    # -- log-determinants --------------------------------------------------------------------
    def _needs_graph(self, *tensors: torch.Tensor | None) -> bool:
        if not torch.is_grad_enabled():
            return False
        return any(t is not None and t.requires_grad for t in tensors) or any(
            p.requires_grad for p in self.parameters()
        )

    def _logdet(self, gx: torch.Tensor, x: torch.Tensor, mode: str, need_graph: bool,
                context=None) -> torch.Tensor:
        if mode == "exact":
            return exact_logdet(gx, x, create_graph=need_graph, max_dim=self.brute_force_max_dim)
        probes, scale = hutchinson_probes(x, self.n_hutchinson, self.hutchinson, self.brute_force_max_dim)
        if mode == "series":
            coef = x.new_ones(self.n_series_terms, x.shape[0])
        else:
            coef = russian_roulette_weights(x.shape[0], self.n_exact_terms, self.roulette_p, x)
        if self._logdet_grad == "neumann_memory_efficient" and need_graph:
            return self._memory_efficient_logdet(gx, x, probes, coef, scale, context)
        if self._logdet_grad == "neumann" and need_graph:
            return neumann_logdet(gx, x, probes, coef, scale)
        return power_series_logdet(gx, x, probes, coef, scale, create_graph=need_graph)

    def _memory_efficient_logdet(self, gx, x, probes, coef, scale, context):
        """The estimator's value, carrying its Neumann-series gradient as a linear surrogate
        ``<grad_x, x> + <grad_theta, theta> / B`` whose gradients were computed here."""
        x_grad, cond, weights = context
        per_item = ([x] if x_grad else []) + ([cond] if cond is not None and cond.requires_grad else [])
        shared = [w for w in weights if w.requires_grad] + [
            p for name, p in self.named_parameters()
            if p.requires_grad and not (name.startswith("layers.") and name.endswith(".weight"))
        ]
        value, grads = neumann_logdet_grads(gx, x, probes, coef, scale, per_item + shared)
        batch = x.shape[0]
        lin = x.new_zeros(batch)
        for t, g in zip(per_item, grads[: len(per_item)]):
            if g is not None:
                lin = lin + (g * t).reshape(batch, -1).sum(1)
        params = [(g * t).sum() for t, g in zip(shared, grads[len(per_item):]) if g is not None]
        if params:
            lin = lin + torch.stack(params).sum() / batch
        logdet = value + (lin - lin.detach())
        if logdet.requires_grad:
            logdet.register_hook(_equal_weights_only)
        return logdet

    def _forward(self, x, cond, weights, mode: str):
        need_graph = self._needs_graph(x, cond)
        with torch.enable_grad():
            # a view, so that vector-Jacobian products w.r.t. it never run hooks placed on x
            xg = x.view_as(x) if (need_graph and x.requires_grad) else x.detach().requires_grad_(True)
            gx = self._g(xg, cond, weights)
            context = (need_graph and x.requires_grad, cond, weights)
            logdet = self._logdet(gx, xg, mode, need_graph, context)
            z = x + gx
        if not need_graph:
            return z.detach(), logdet.detach()
        return z, logdet

    @staticmethod
    def _outside_inference_mode(method, x, cond):
        """Log-dets need autograd, which ``torch.inference_mode`` forbids: rerun the call on
        ordinary copies with inference mode switched off (outputs are ordinary tensors)."""
        with torch.inference_mode(False):
            return method(x.clone(), None if cond is None else cond.clone())

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None):
        if torch.is_inference_mode_enabled():
            return self._outside_inference_mode(self.forward, x, cond)
        self._check(x, cond)
        weights = self.normalized_weights(update=self.training)
        return self._forward(x, cond, weights, self.logdet_mode)

    def logdet_exact(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """``log|det dz/dx|`` by brute force, whatever ``logdet_mode`` is (small inputs only)."""
        if torch.is_inference_mode_enabled():
            return self._outside_inference_mode(self.logdet_exact, x, cond)
        self._check(x, cond)
        return self._forward(x, cond, self.normalized_weights(update=False), "exact")[1]

    # -- inverse -----------------------------------------------------------------------------
    def _tolerance(self, dtype: torch.dtype) -> float:
        if self.inverse_tol is not None:
            return float(self.inverse_tol)
        return {torch.float64: 1e-10, torch.float32: 1e-5}.get(dtype, 1e-2)

    def _fixed_point(self, step, start: torch.Tensor, tol: float, what: str) -> torch.Tensor:
        """Iterate ``x <- step(x)`` until ``max|change| <= tol * max(1, max|x|)``."""
        x = start
        for it in range(1, self.inverse_max_iter + 1):
            new = step(x)
            change = float((new - x).abs().max()) if new.numel() else 0.0
            x = new
            if not math.isfinite(change):
                raise NonConvergenceError(f"{what}: non-finite values after {it} iterations")
            if change <= tol * max(1.0, float(x.abs().max()) if x.numel() else 0.0):
                return x
        residual = float((x - step(x)).abs().max())
        raise NonConvergenceError(
            f"{what} did not converge: max residual {residual:.3e} after {self.inverse_max_iter} "
            f"iterations (tol {tol:.1e}); raise inverse_max_iter or inverse_tol"
        )

    def inverse(self, z: torch.Tensor, cond: torch.Tensor | None = None):
        if torch.is_inference_mode_enabled():
            return self._outside_inference_mode(self.inverse, z, cond)
        self._check(z, cond)
        weights = self.normalized_weights(update=False)
        tol = self._tolerance(z.dtype)
        with torch.no_grad():
            wd = [w.detach() for w in weights]
            zd = z.detach()
            cd = None if cond is None else cond.detach()
            x = self._fixed_point(lambda x: zd - self._g(x, cd, wd), zd.clone(), tol, "ResidualBlock.inverse")

        if self._needs_graph(z, cond):
            with torch.enable_grad():
                x_leaf = x.detach().requires_grad_(True)
                gx_star = self._g(x_leaf, cd, wd)  # J_g at the solution, for the adjoint solve
                x = z - self._g(x, cond, weights)  # equals the solution; carries d/dz, d/dtheta

            def implicit_grad(grad: torch.Tensor) -> torch.Tensor:
                # solve u = grad - J_g^T u, i.e. u = (I + J_g)^-T grad
                def step(u):
                    return grad - torch.autograd.grad(gx_star, x_leaf, u, retain_graph=True)[0]

                return self._fixed_point(step, grad, tol, "ResidualBlock.inverse backward")

            x.register_hook(implicit_grad)
        _, logdet = self._forward(x, cond, weights, self.logdet_mode)
        return x, -logdet

    # -- diagnostics -------------------------------------------------------------------------
    @torch.no_grad()
    def lipschitz_bounds(self) -> dict[str, float]:
        """Exact operator-norm bound of each normalised layer (see :meth:`SpectralNormLayer.operator_norm_bound`).

        The weights are normalised with the stored power-iteration vectors, as an eval-mode
        forward uses them. Their product bounds ``Lip(g)`` with respect to ``x``; each should be
        ``<= coeff`` up to the power-iteration error.
        """
        return {f"layers.{i}": layer.operator_norm_bound() for i, layer in enumerate(self.layers)}

    @torch.no_grad()
    def lipschitz_bound(self) -> float:
        """An upper bound on ``Lip(g)`` in ``x`` from :meth:`lipschitz_bounds`: their product for
        the plain branch; for the dense one the last layer's bound times, per dense layer,
        ``sqrt(eta_1^2 + eta_2^2 b^2)`` (``b`` its layer's bound; the activations are
        1-Lipschitz and ``||(a, c)||^2 = ||a||^2 + ||c||^2`` for a concatenation)."""
        bounds = list(self.lipschitz_bounds().values())
        if not self.dense:
            return math.prod(bounds)
        etas = self.dense_weights().double()
        factors = [math.sqrt(float(e[0]) ** 2 + (float(e[1]) * b) ** 2) for e, b in zip(etas, bounds[:-1])]
        return bounds[-1] * math.prod(factors)

    @torch.no_grad()
    def refresh_spectral_norms(self, n_iterations: int = 50) -> None:
        """Run power iterations on every layer (after editing or loading weights)."""
        for layer in self.layers:
            layer.refresh(n_iterations)


def _equal_weights_only(grad: torch.Tensor) -> None:
    """Backward hook of ``logdet_grad="neumann_memory_efficient"`` log-dets: the weight
    gradients computed in forward belong to the batch sum, valid only for equal item weights."""
    spread = float((grad - grad.mean()).abs().max()) if grad.numel() else 0.0
    if spread > 1e-6 * float(grad.abs().max()):
        raise RuntimeError(
            "logdet_grad='neumann_memory_efficient' needs a loss that weights every item's "
            f"log-det equally (a sum or mean over the batch); the incoming gradients differ by "
            f"{spread:.3g}. Use logdet_grad='neumann' for other losses"
        )
