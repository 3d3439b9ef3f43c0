"""Tests of the invertible residual block (i-ResNet / Residual Flows).

Every log-determinant is checked against an independent computation: the full Jacobian of the
map ``x -> z`` from ``torch.autograd.functional.jacobian`` and ``torch.linalg.slogdet``.
"""

from __future__ import annotations

import math

import pytest
import torch

from vocoflow.flows.base import NonConvergenceError
from vocoflow.flows.lipschitz import LipSwish, SpectralNormLayer
from vocoflow.flows.residual import ResidualBlock

F64 = torch.float64


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The tensors here are tiny: threads only add contention (3x slower on a busy 2-core box)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# (ndim, input shape): vectors, audio, images
SHAPES = [(0, (4, 6)), (1, (2, 3, 5)), (2, (2, 2, 3, 3))]


def make_block(channels, ndim, *, strong=True, seed=0, dtype=F64, **kw):
    """A block in eval mode; ``strong`` scales the raw weights up so every layer is at ``coeff``."""
    torch.manual_seed(seed)
    kw.setdefault("hidden", 8)
    block = ResidualBlock(channels, ndim=ndim, **kw).to(dtype)
    if strong:
        with torch.no_grad():
            for layer in block.layers:
                layer.weight.mul_(10.0)
    return block.eval()  # leaving training mode converges the power iterations


def make_cond(shape, cond_channels, broadcast, dtype=F64):
    if cond_channels == 0:
        return None
    if broadcast:
        return torch.randn(shape[0], cond_channels, dtype=dtype)
    return torch.randn(shape[0], cond_channels, *shape[2:], dtype=dtype)


def full_jacobian(fn, x):
    """Per-item Jacobians ``(B, D, D)`` of a batched map, and the largest cross-item entry."""
    batch, dim = x.shape[0], x[0].numel()
    jac = torch.autograd.functional.jacobian(fn, x).reshape(batch, dim, batch, dim)
    items = torch.stack([jac[i, :, i, :] for i in range(batch)])
    cross = jac.clone()
    for i in range(batch):
        cross[i, :, i, :] = 0
    return items, cross.abs().max()


# ------------------------------------------------------------------------------------------------
# inverse and exact log-determinant
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ndim,shape,cond_channels,broadcast", [
    (ndim, shape, cc, bc) for ndim, shape in SHAPES
    for cc, bc in [(0, False), (2, False), (2, True)]
    if not (ndim == 0 and cc and not bc)  # vectors take (B, C) conditioning only
])
def test_roundtrip_and_exact_logdet(ndim, shape, cond_channels, broadcast):
    block = make_block(shape[1], ndim, cond_channels=cond_channels, n_layers=2)
    torch.manual_seed(1)
    x = 2 * torch.randn(shape, dtype=F64)
    cond = make_cond(shape, cond_channels, broadcast)

    z, logdet = block(x, cond)
    assert z.shape == x.shape and logdet.shape == (shape[0],)
    x_back, inv_logdet = block.inverse(z, cond)
    assert (x_back - x).abs().max() < 1e-6
    torch.testing.assert_close(inv_logdet, -logdet, atol=1e-10, rtol=0)

    jac, cross = full_jacobian(lambda t: block(t, cond)[0], x)
    assert cross == 0  # batch items are independent
    reference = torch.linalg.slogdet(jac).logabsdet
    torch.testing.assert_close(logdet, reference, atol=1e-7, rtol=0)
    # and against central finite differences of z = x + g(x) (no autograd at all)
    torch.testing.assert_close(z, x + block.residual(x, cond), atol=1e-14, rtol=0)
    h, dim, batch = 1e-5, x[0].numel(), x.shape[0]
    steps = h * torch.eye(dim, dtype=F64).reshape(dim, 1, *x.shape[1:])  # (D, 1, ...)
    points = torch.cat([x + steps, x - steps]).reshape(2 * dim * batch, *x.shape[1:])
    conds = None if cond is None else cond.repeat(2 * dim, *([1] * (cond.dim() - 1)))
    with torch.no_grad():
        moved = (points + block.residual(points, conds)).reshape(2, dim, batch, dim)
    fd_jac = ((moved[0] - moved[1]) / (2 * h)).permute(1, 2, 0)  # (B, D_out, D_in)
    torch.testing.assert_close(logdet, torch.linalg.slogdet(fd_jac).logabsdet, atol=1e-7, rtol=0)
    # the block is far from the identity, so the check has teeth
    assert (jac - torch.eye(jac.shape[-1], dtype=F64)).abs().max() > 0.02


def test_inverse_jacobian_and_gradient():
    """The inverse is differentiable: d x / d z = (I + J_g)^-1, and parameter gradients match
    finite differences of the whole inverse pass (fixed point + log-det)."""
    block = make_block(3, 1, cond_channels=2, n_layers=2, inverse_tol=1e-13)
    torch.manual_seed(2)
    x = torch.randn(2, 3, 5, dtype=F64)
    cond = make_cond(x.shape, 2, False)
    z = block(x, cond)[0].detach()
    jac_fwd, _ = full_jacobian(lambda t: block(t, cond)[0], x)
    jac_inv, _ = full_jacobian(lambda t: block.inverse(t, cond)[0], z)
    torch.testing.assert_close(jac_inv, torch.linalg.inv(jac_fwd), atol=1e-9, rtol=0)

    def objective():
        x_rec, ld = block.inverse(z, cond)
        return (x_rec * torch.linspace(-1, 1, x_rec.numel(), dtype=F64).reshape(x_rec.shape)).sum() + ld.sum()

    weight = block.layers[0].weight
    block.zero_grad()
    objective().backward()
    analytic = weight.grad[1, 2, 0].item()
    h = 1e-6
    with torch.no_grad():
        weight[1, 2, 0] += h
        up = objective().item()
        weight[1, 2, 0] -= 2 * h
        down = objective().item()
        weight[1, 2, 0] += h
    numeric = (up - down) / (2 * h)
    assert abs(analytic) > 1e-2 and abs(analytic - numeric) < 1e-6 * max(1.0, abs(analytic))


def test_nonconvergence_raises():
    block = make_block(3, 1, inverse_max_iter=1, inverse_tol=1e-14)
    z = torch.randn(2, 3, 5, dtype=F64)
    with pytest.raises(NonConvergenceError, match=r"residual .* after 1 iterations"):
        block.inverse(z)
    block.inverse_max_iter = 500
    x, _ = block.inverse(z)
    assert (block(x)[0] - z).abs().max() < 1e-9


def test_float32_roundtrip():
    block = make_block(3, 1, dtype=torch.float32)
    block64 = make_block(3, 1, dtype=F64)
    torch.manual_seed(3)
    x = torch.randn(2, 3, 7)
    z, logdet = block(x)
    x_back, inv_logdet = block.inverse(z)
    assert x_back.dtype == torch.float32 and logdet.dtype == torch.float32
    assert (x_back - x).abs().max() < 1e-4
    torch.testing.assert_close(logdet.double(), block64(x.double())[1], atol=1e-4, rtol=0)
    block.logdet_mode = "unbiased"
    assert torch.isfinite(block(x)[1]).all()


def test_inference_mode():
    block = make_block(3, 1, cond_channels=2)
    x = torch.randn(2, 3, 5, dtype=F64)
    cond = torch.randn(2, 2, dtype=F64)
    z, logdet = block(x, cond)
    with torch.inference_mode():
        z_inf, logdet_inf = block(x, cond)
        x_inf, inv_logdet_inf = block.inverse(z_inf, cond)
    torch.testing.assert_close(z_inf, z, atol=0, rtol=0)
    torch.testing.assert_close(logdet_inf, logdet.detach(), atol=1e-14, rtol=0)
    assert (x_inf - x).abs().max() < 1e-9
    torch.testing.assert_close(inv_logdet_inf, -logdet.detach(), atol=1e-10, rtol=0)


def test_exact_mode_refuses_large_inputs():
    block = make_block(3, 1, strong=False, brute_force_max_dim=10)
    x = torch.randn(1, 3, 5, dtype=F64)  # 15 elements per item
    with pytest.raises(ValueError, match="brute_force_max_dim"):
        block(x)
    block.logdet_mode = "series"
    assert block(x)[1].shape == (1,)
    with pytest.raises(ValueError, match="logdet mode"):
        block.logdet_mode = "approximate"


def test_bad_shapes_and_missing_cond():
    block = make_block(3, 1, strong=False, cond_channels=2)
    x = torch.randn(2, 3, 5, dtype=F64)
    with pytest.raises(ValueError, match="needs cond"):
        block(x)
    with pytest.raises(ValueError, match="cond must be"):
        block(x, torch.randn(2, 2, 4, dtype=F64))
    with pytest.raises(ValueError, match="expected input"):
        block(torch.randn(2, 4, 5, dtype=F64), torch.randn(2, 2, dtype=F64))


# ------------------------------------------------------------------------------------------------
# stochastic and truncated log-determinants
# ------------------------------------------------------------------------------------------------


def strong_linear_block(**kw):
    """One conv layer: g is linear with ||J_g|| = 0.86, so the series needs many terms."""
    return make_block(3, 1, n_layers=1, **kw)


@pytest.mark.parametrize("n_layers,p", [(1, 0.2), (3, 0.5)])
def test_russian_roulette_is_unbiased(n_layers, p):
    # one layer: spectral radius 0.81, so p must stay below 1 - 0.81^2 for a finite variance
    block = make_block(3, 1, n_layers=n_layers, logdet="unbiased", hutchinson="rademacher", roulette_p=p)
    torch.manual_seed(4)
    x = torch.randn(1, 3, 5, dtype=F64)
    exact = block.logdet_exact(x).item()
    n = 2000
    with torch.no_grad():
        draws = block(x.expand(n, 3, 5))[1]
    mean, se = draws.mean().item(), draws.std().item() / math.sqrt(n)
    assert abs(mean - exact) < 3 * se
    if n_layers == 1:
        # the test has power: the always-computed terms alone are off by many standard errors
        block.logdet_mode, block.hutchinson, block.n_series_terms = "series", "exact", block.n_exact_terms
        assert abs(block(x)[1].item() - exact) > 3 * se


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_hutchinson_series_matches_exact_trace_series(probe):
    block = strong_linear_block(logdet="series", n_series_terms=6, hutchinson="exact")
    torch.manual_seed(5)
    x = torch.randn(1, 3, 5, dtype=F64)
    with torch.no_grad():
        target = block(x)[1].item()
        block.hutchinson, block.n_hutchinson = probe, 4
        draws = block(x.expand(1000, 3, 5))[1]
    se = draws.std().item() / math.sqrt(draws.numel())
    assert abs(draws.mean().item() - target) < 3 * se


def test_series_bias_decreases_with_terms():
    """Exact traces make the truncated series deterministic, so its bias is measured exactly."""
    block = strong_linear_block(logdet="series", hutchinson="exact")
    torch.manual_seed(6)
    x = torch.randn(1, 3, 5, dtype=F64)
    exact = block.logdet_exact(x).item()
    lip = math.prod(block.lipschitz_bounds().values())
    dim = x[0].numel()
    biases = []
    for n in (1, 2, 4, 8, 16, 32):
        block.n_series_terms = n
        bias = abs(block(x)[1].item() - exact)
        assert bias <= dim * lip ** (n + 1) / ((n + 1) * (1 - lip))  # the documented bound
        biases.append(bias)
    assert all(later < earlier for earlier, later in zip(biases, biases[1:]))
    assert biases[0] > 0.1 and biases[-1] < 1e-3 * biases[0]


# ------------------------------------------------------------------------------------------------
# spectral normalisation and the Lipschitz constant
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ndim,shape", SHAPES)
def test_spectral_norms_stay_below_coeff_while_training(ndim, shape):
    block = make_block(shape[1], ndim, strong=False, cond_channels=2, coeff=0.9).train()
    opt = torch.optim.Adam(block.parameters(), lr=0.05)
    torch.manual_seed(7)
    x = torch.randn(8, *shape[1:], dtype=F64)
    cond = torch.randn(8, 2, dtype=F64)
    for _ in range(15):
        opt.zero_grad()
        z, _ = block(x, cond)
        (-(z - x).square().mean()).backward()  # grow g: pushes every weight up
        opt.step()
    block.eval()
    bounds = block.lipschitz_bounds()
    assert max(bounds.values()) <= 0.9 + 1e-3
    assert all(layer.sigma().item() > 0.9 for layer in block.layers)  # normalisation is active
    # Lip(g) in x for fixed cond, on a longer input than trained on: spectral norm of J_g
    long_x = torch.randn(1, shape[1], *[2 * s + 3 for s in shape[2:]], dtype=F64)
    long_c = torch.randn(1, 2, dtype=F64)
    jac = torch.autograd.functional.jacobian(lambda t: block.residual(t, long_c), long_x)
    jac = jac.reshape(long_x.numel(), long_x.numel())
    assert torch.linalg.matrix_norm(jac, ord=2) <= math.prod(bounds.values()) + 1e-9


def test_frequency_bound_versus_reshape_approximation():
    """A smoothing kernel (equal taps) has operator norm sqrt(3) x its reshaped-matrix norm."""
    layers = {}
    for mode in ("frequency", "reshape"):
        torch.manual_seed(8)
        layer = SpectralNormLayer(4, 4, kernel_size=3, ndim=1, coeff=0.97, conv_norm=mode).double()
        with torch.no_grad():
            layer.weight.copy_(10 * layer.weight[:, :, :1].expand(4, 4, 3))
        layer.refresh(200)
        layers[mode] = layer.eval()
    x = torch.randn(1, 4, 64, dtype=F64)
    for mode, layer in layers.items():
        jac = torch.autograd.functional.jacobian(lambda t: layer(t), x).reshape(x.numel(), -1)
        norm = torch.linalg.matrix_norm(jac, ord=2).item()  # the exact operator norm on T = 64
        bound = layer.operator_norm_bound()
        assert norm <= bound + 1e-9
        if mode == "frequency":
            assert 0.95 < norm and bound <= 0.97 + 1e-6
        else:
            assert norm > 1.5  # the reshape approximation does not bound Lip(g)


@pytest.mark.parametrize("ndim", [1, 2])
def test_conv_bound_is_tight_and_exact_for_1x1(ndim):
    torch.manual_seed(9)
    layer = SpectralNormLayer(3, 5, kernel_size=3, ndim=ndim, coeff=0.8).double()
    with torch.no_grad():
        layer.weight.mul_(10)
    layer.refresh(300)
    layer.eval()
    assert 0.8 * (1 - 0.03) < layer.operator_norm_bound() <= 0.8 + 1e-6
    point = SpectralNormLayer(3, 5, kernel_size=1, ndim=ndim, coeff=0.8).double()
    with torch.no_grad():
        point.weight.mul_(10)
    point.refresh(300)
    w = point.eval().normalized_weight()
    exact = torch.linalg.matrix_norm(w.reshape(5, 3), ord=2).item()
    assert abs(exact - 0.8) < 1e-9 and abs(point.operator_norm_bound() - exact) < 1e-12


def test_lipswish_is_one_lipschitz():
    act = LipSwish(3).double()
    with torch.no_grad():
        act.raw_beta.copy_(torch.tensor([-3.0, 0.5, 4.0]))
    x = torch.linspace(-20, 20, 4001, dtype=F64).reshape(1, 1, -1).expand(1, 3, -1).clone().requires_grad_()
    (slope,) = torch.autograd.grad(act(x).sum(), x)
    assert slope.max() <= 1.0 and slope.min() >= -0.1 / 1.1 - 1e-12
    assert slope.max() > 0.99  # the bound is attained, so the 1.1 is needed


def test_power_iteration_state():
    block = make_block(3, 1, strong=False)
    keys = block.state_dict().keys()
    assert {"layers.0.u", "layers.0.v"} <= set(keys)
    x = torch.randn(2, 3, 5, dtype=F64)
    before = {k: v.clone() for k, v in block.state_dict().items()}
    out1, out2 = block(x), block(x)
    assert torch.equal(out1[0], out2[0]) and torch.equal(out1[1], out2[1])
    assert all(torch.equal(v, before[k]) for k, v in block.state_dict().items())  # eval: no update
    block.train()
    with torch.no_grad():
        block.layers[0].weight.mul_(3)
    block(x)
    assert not torch.equal(block.layers[0].u, before["layers.0.u"])
    block.eval()  # leaving training mode converges the vectors
    twin = make_block(3, 1, strong=False, seed=123)
    twin.load_state_dict(block.state_dict())
    assert torch.equal(twin(x)[0], block(x)[0])


# ------------------------------------------------------------------------------------------------
# gradients
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mode,neumann",
    [("exact", False), ("series", False), ("series", True), ("unbiased", False), ("unbiased", True)],
)
@pytest.mark.parametrize("ndim,shape", SHAPES[:2])
def test_gradients_reach_every_parameter(mode, neumann, ndim, shape):
    block = make_block(shape[1], ndim, cond_channels=2, logdet=mode, neumann_grad=neumann).train()
    x = torch.randn(shape, dtype=F64, requires_grad=True)
    cond = torch.randn(shape[0], 2, dtype=F64, requires_grad=True)
    z, logdet = block(x, cond)
    (z.square().sum() - logdet.sum()).backward()
    for name, p in block.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    assert x.grad is not None and cond.grad is not None


def _logdet_grads(block, x, seed):
    torch.manual_seed(seed)
    x = x.clone().requires_grad_(True)
    block.zero_grad()
    block(x)[1].sum().backward()
    grads = [p.grad.clone() for p in block.parameters() if p.grad is not None]
    return grads + [x.grad.clone() if x.grad is not None else torch.zeros_like(x)]


@pytest.mark.parametrize("n_layers", [1, 3])
def test_neumann_gradient_matches_exact_gradient(n_layers):
    """With exact traces the Neumann estimator is deterministic: sum_{j<n} (-1)^j tr(J^j dJ).

    * It equals the gradient of the truncated series (cyclicity of the trace), and
    * for many terms it equals the gradient of the exact log-det, tr((I + J)^-1 dJ).
    """
    block = make_block(3, 1, n_layers=n_layers, hutchinson="exact")
    torch.manual_seed(10)
    x = torch.randn(2, 3, 5, dtype=F64)
    block.logdet_mode = "exact"
    exact = _logdet_grads(block, x, 0)
    block.logdet_mode, block.n_series_terms = "series", 150
    block.neumann_grad = True
    neumann = _logdet_grads(block, x, 0)
    for a, b in zip(neumann, exact):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-7)
    # few terms: still identical to backprop through the same truncated series
    block.n_series_terms = 3
    neumann = _logdet_grads(block, x, 0)
    block.neumann_grad = False
    backprop = _logdet_grads(block, x, 0)
    for a, b in zip(neumann, backprop):
        torch.testing.assert_close(a, b, atol=1e-11, rtol=1e-9)
    # the Russian roulette: same seed, same draw of N, same gradient either way
    block.logdet_mode = "unbiased"
    backprop = _logdet_grads(block, x, 11)
    block.neumann_grad = True
    neumann = _logdet_grads(block, x, 11)
    for a, b in zip(neumann, backprop):
        torch.testing.assert_close(a, b, atol=1e-11, rtol=1e-9)


def test_neumann_value_equals_estimator_value():
    block = strong_linear_block(logdet="unbiased", neumann_grad=True).train()
    x = torch.randn(3, 3, 5, dtype=F64)
    torch.manual_seed(12)
    with_neumann = block(x)[1]
    block.neumann_grad = False
    torch.manual_seed(12)
    plain = block(x)[1]
    torch.testing.assert_close(with_neumann, plain, atol=1e-12, rtol=0)
