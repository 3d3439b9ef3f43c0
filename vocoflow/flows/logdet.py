"""Log-determinant estimators for invertible residual maps ``z = x + g(x)``.

With ``J`` the Jacobian of a contraction ``g`` (spectral radius below one),

    log|det dz/dx| = log det(I + J) = sum_{k>=1} (-1)^(k+1) / k * tr(J^k).

Every function here works on ``gx = g(x)`` computed with autograd from ``x`` (``x`` requires
grad) and reaches ``J`` only through vector-Jacobian products ``v^T J`` (:func:`vjp`), batched
over a leading stack of vectors. Per batch item they return ``(B,)`` log-determinants:

* :func:`exact_logdet`: ``slogdet(I + J)`` of the full per-item Jacobian (one product per
  input element; small inputs only);
* :func:`power_series_logdet`: the power series with per-term weights ``coef`` and traces from
  probe vectors (:func:`hutchinson_probes`, :func:`hutchinson_trace`); all-ones weights
  truncate the series, :func:`russian_roulette_weights` make it unbiased (Chen et al., 2019,
  "Residual Flows for Invertible Generative Modeling");
* :func:`neumann_logdet`: the same value, with the memory-saving Neumann-series gradient of
  Residual Flows instead of backpropagation through the series;
* :func:`neumann_logdet_grads`: the same value and the gradients of that Neumann-series
  estimator with respect to given tensors, computed at once (Residual Flows' "backward-in-forward":
  no graph of the estimator outlives the call).
"""

from __future__ import annotations

import torch

__all__ = [
    "PROBES", "vjp", "jacobian_basis", "exact_logdet", "hutchinson_probes", "hutchinson_trace",
    "russian_roulette_weights", "power_series_logdet", "neumann_logdet", "neumann_logdet_grads",
]

#: kinds of probe vectors for :func:`hutchinson_probes`
PROBES = ("rademacher", "gaussian", "exact")


def vjp(gx: torch.Tensor, x: torch.Tensor, w: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
    """``w^T J`` for a stack of vectors ``w`` of shape ``(m, *x.shape)`` (``J = dgx/dx``)."""
    if w.shape[0] == 1:
        out = torch.autograd.grad(gx, x, w[0], retain_graph=True, create_graph=create_graph)[0]
        return out.unsqueeze(0)
    return torch.autograd.grad(
        gx, x, w, retain_graph=True, create_graph=create_graph, is_grads_batched=True
    )[0]


def jacobian_basis(x: torch.Tensor, max_dim: int = 1024) -> torch.Tensor:
    """The ``dim = x[0].numel()`` basis vectors of one item, stacked: ``(dim, *x.shape)``.

    Raises ``ValueError`` when ``dim > max_dim`` (each vector costs one product)."""
    dim = x[0].numel()
    if dim > max_dim:
        raise ValueError(
            f"exact Jacobians need {dim} vector-Jacobian products per item (C * spatial = {dim} "
            f"> brute_force_max_dim={max_dim}); use logdet='series' or "
            f"'unbiased' with random probes, or raise brute_force_max_dim"
        )
    eye = torch.eye(dim, dtype=x.dtype, device=x.device).reshape(dim, 1, *x.shape[1:])
    return eye.expand(dim, *x.shape).contiguous()


def exact_logdet(gx: torch.Tensor, x: torch.Tensor, create_graph: bool = False,
                 max_dim: int = 1024) -> torch.Tensor:
    """``log|det(I + J)|`` per item from the full Jacobian (``x[0].numel() <= max_dim``).

    >>> x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    >>> a = 0.3 * torch.randn(3, 3, dtype=torch.float64)
    >>> ld = exact_logdet(x @ a.T, x)
    >>> bool(torch.allclose(ld, torch.linalg.slogdet(torch.eye(3, dtype=a.dtype) + a)[1]))
    True
    """
    basis = jacobian_basis(x, max_dim)
    dim = basis.shape[0]
    rows = vjp(gx, x, basis, create_graph)  # rows[i, b] = e_i^T J_b
    jac = rows.movedim(0, 1).reshape(x.shape[0], dim, dim)
    eye = torch.eye(dim, dtype=x.dtype, device=x.device)
    return torch.linalg.slogdet(eye + jac).logabsdet


def hutchinson_probes(x: torch.Tensor, n: int = 1, kind: str = "rademacher",
                      max_dim: int = 1024) -> tuple[torch.Tensor, float]:
    """``(probes, scale)`` for Hutchinson's trace estimator: ``n`` random vectors shaped like
    ``x`` (``(n, *x.shape)``; ``rademacher`` signs or ``gaussian``) and ``scale = 1 / n``, or
    for ``kind="exact"`` all basis vectors (:func:`jacobian_basis`) and ``scale = 1``: exact
    traces."""
    if kind == "exact":
        return jacobian_basis(x, max_dim), 1.0
    shape = (n, *x.shape)
    if kind == "gaussian":
        v = torch.randn(shape, dtype=x.dtype, device=x.device)
    else:
        v = torch.randint(0, 2, shape, device=x.device).to(x.dtype) * 2 - 1
    return v, 1.0 / n


def hutchinson_trace(w: torch.Tensor, probes: torch.Tensor, scale: float) -> torch.Tensor:
    """Per-item trace estimate ``scale * sum_probes w . v`` from ``w = v^T A`` ``(n, B, ...)``."""
    return (w * probes).flatten(2).sum(-1).sum(0) * scale


def russian_roulette_weights(batch: int, n_exact_terms: int, p: float,
                             like: torch.Tensor) -> torch.Tensor:
    """Weights ``c[k-1, b]`` of series term ``k`` for item ``b`` that make the series unbiased.

    The first ``n_exact_terms`` terms always count (weight 1); with ``N ~ Geometric(p)`` drawn per
    item, term ``n_exact_terms + m`` counts only if ``N >= m``, divided by ``P(N >= m) =
    (1 - p) ** m``. The number of rows is ``n_exact_terms + max(N)``. ``like`` gives dtype and
    device."""
    extra = torch.distributions.Geometric(probs=torch.tensor(p, dtype=torch.float64)).sample((batch,))
    extra = extra.to(device=like.device, dtype=torch.long)
    n_terms = n_exact_terms + int(extra.max())
    k = torch.arange(1, n_terms + 1, device=like.device)
    m = (k - n_exact_terms).clamp_min(0)  # 0 for the always-computed terms
    reached = (extra.unsqueeze(0) >= m.unsqueeze(1)).to(like.dtype)
    return reached * (1.0 - p) ** (-m.to(like.dtype)).unsqueeze(1)


def power_series_logdet(gx: torch.Tensor, x: torch.Tensor, probes: torch.Tensor,
                        coef: torch.Tensor, scale: float = 1.0,
                        create_graph: bool = False) -> torch.Tensor:
    """``sum_k (-1)^(k+1) / k * coef[k-1] * tr(J^k)`` per item, ``k = 1 .. len(coef)``, with
    the traces estimated from ``probes`` (:func:`hutchinson_probes`). ``create_graph``: keep the
    graph of every product, so the value can be backpropagated."""
    total = x.new_zeros(x.shape[0])
    w = probes
    for k in range(1, coef.shape[0] + 1):
        w = vjp(gx, x, w, create_graph=create_graph)  # v^T J^k
        trace = hutchinson_trace(w, probes, scale)
        total = total + ((-1) ** (k + 1) / k) * coef[k - 1] * trace
    return total


def neumann_logdet(gx: torch.Tensor, x: torch.Tensor, probes: torch.Tensor,
                   coef: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """The value of :func:`power_series_logdet` without keeping the series' graph; its gradient
    is the Neumann-series one, ``v^T (sum_j (-1)^j c_{j+1} J^j) (dJ) v``, which estimates
    ``tr((I + J)^-1 dJ)`` (Residual Flows' memory-saving estimator)."""
    total, surrogate = _neumann_surrogate(gx, x, probes, coef, scale)
    return total.detach() + (surrogate - surrogate.detach())


def _neumann_surrogate(gx, x, probes, coef, scale):
    """The series value (no graph) and ``v^T (sum_j (-1)^j c_{j+1} J^j) J v`` with the graph of
    its last product only: its gradient is the Neumann-series gradient."""
    bshape = (1, -1) + (1,) * (x.dim() - 1)
    total = x.new_zeros(x.shape[0])
    grad_vec = torch.zeros_like(probes)
    w = probes
    for k in range(1, coef.shape[0] + 1):
        # accumulate v^T sum_j (-1)^j c_{j+1} J^j
        grad_vec = grad_vec + ((-1) ** (k - 1) * coef[k - 1]).reshape(bshape) * w
        w = vjp(gx, x, w, create_graph=False)  # v^T J^k
        trace = hutchinson_trace(w, probes, scale)
        total = total + ((-1) ** (k + 1) / k) * coef[k - 1] * trace
    surrogate = hutchinson_trace(vjp(gx, x, grad_vec, create_graph=True), probes, scale)
    return total.detach(), surrogate


def neumann_logdet_grads(gx: torch.Tensor, x: torch.Tensor, probes: torch.Tensor,
                         coef: torch.Tensor, scale: float, inputs) -> tuple:
    """``(value, grads)``: the value of :func:`power_series_logdet` (``(B,)``, no graph) and the
    gradients of the batch sum of :func:`neumann_logdet`'s estimator with respect to each tensor
    of ``inputs`` (``None`` for one it does not depend on).

    This is the "backward-in-forward" of Chen et al. (2019), "Residual Flows for Invertible
    Generative Modeling", section 3.2: the Neumann-series gradient is evaluated during the
    forward pass, so the graph of the estimator (the double-backward graph of one
    vector-Jacobian product) is freed before the next block runs instead of being kept until
    ``backward``; the graph of ``gx`` itself is kept (``retain_graph``) for the caller.

    >>> _ = torch.manual_seed(0)
    >>> x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    >>> a = (0.1 * torch.randn(3, 3, dtype=torch.float64)).requires_grad_()
    >>> probes, scale = hutchinson_probes(x, kind="exact")
    >>> coef = torch.ones(40, 2, dtype=torch.float64)
    >>> value, (grad_a,) = neumann_logdet_grads(x @ a.T, x, probes, coef, scale, [a])
    >>> eye = torch.eye(3, dtype=torch.float64)
    >>> bool(torch.allclose(grad_a, 2 * torch.linalg.inv(eye + a).T, atol=1e-10))
    True
    """
    inputs = list(inputs)
    total, surrogate = _neumann_surrogate(gx, x, probes, coef, scale)
    grads = torch.autograd.grad(surrogate.sum(), inputs, retain_graph=True, allow_unused=True)
    return total, grads
