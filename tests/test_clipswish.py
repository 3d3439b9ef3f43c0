"""CLipSwish, the dense residual branch (i-DenseNets) and the memory-efficient log-det gradient.

Lipschitz bounds are checked numerically (random and worst-case directions of the Jacobian);
inversion and log-determinants against the full autograd Jacobian (``tests/flowcheck.py``); the
memory-efficient Neumann gradient against backpropagation through the same series and against
the ``neumann`` path for the same random draw, all in float64.
"""

from __future__ import annotations

import math

import pytest
import torch

from tests.flowcheck import jacobian_logdet
from vocoflow.flows import ResidualBlock
from vocoflow.flows.lipschitz import ACTIVATIONS, CLipSwish, LipSwish, clipswish_constant
from vocoflow.images.models import build_image_flow

F64 = torch.float64


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _act(betas) -> CLipSwish:
    act = CLipSwish(len(betas)).double()
    with torch.no_grad():  # softplus(raw) = beta
        act.raw_beta.copy_(torch.log(torch.expm1(torch.tensor(betas, dtype=F64))))
    return act


def _jvp_ratio(act, x, v):
    """``||J v|| / ||v||`` per item, with ``J v`` from forward-mode autograd."""
    _, jv = torch.func.jvp(act, (x,), (v,))
    return jv.flatten(1).norm(dim=1) / v.flatten(1).norm(dim=1)


# ------------------------------------------------------------------------------------------------
# CLipSwish
# ------------------------------------------------------------------------------------------------


def test_clipswish_definition_and_constant():
    act = _act([0.3, 1.0, 5.0])
    x = torch.randn(4, 3, 7, dtype=F64)
    out = act(x)
    assert out.shape == (4, 6, 7)
    lip = LipSwish(3).double()
    lip.load_state_dict(act.state_dict())
    torch.testing.assert_close(out, torch.cat([lip(x), lip(-x)], 1) / clipswish_constant(), atol=1e-15, rtol=0)
    # the constant against a brute-force maximum of the per-element Jacobian norm
    t = torch.linspace(-30, 30, 300001, dtype=F64)
    s = torch.sigmoid(t)
    u = s + t * s * (1 - s)  # slope of t sigmoid(t), by hand
    brute = (torch.sqrt(u**2 + (1 - u) ** 2) / 1.1).max().item()
    assert abs(brute - clipswish_constant()) < 1e-9
    assert 1.0039 < clipswish_constant() < 1.0040  # the paper's "1.004"
    assert ACTIVATIONS.get("clipswish").cls is CLipSwish and CLipSwish.expansion == 2


def test_clipswish_is_one_lipschitz_random_and_worst_case():
    act = _act([0.05, 0.5, 1.0, 4.0])
    torch.manual_seed(0)
    # random inputs at several scales, random directions
    x = torch.randn(256, 4, 9, dtype=F64) * torch.logspace(-1, 1.5, 256, dtype=F64).reshape(-1, 1, 1)
    ratios = _jvp_ratio(act, x, torch.randn_like(x))
    assert ratios.max() <= 1.0 + 1e-12 and ratios.max() > 0.5
    # worst case: gradient ascent on input and direction (Adam), from many starts
    x = (3 * torch.randn(32, 4, 3, dtype=F64)).requires_grad_()
    v = torch.randn(32, 4, 3, dtype=F64).requires_grad_()
    opt = torch.optim.Adam([x, v], lr=0.1)
    for _ in range(60):
        opt.zero_grad()
        (-_jvp_ratio(act, x, v).sum()).backward()
        opt.step()
    best = _jvp_ratio(act, x.detach(), v.detach()).max().item()
    assert best <= 1.0 + 1e-12
    assert best > 1.0 - 1e-4  # the ascent finds the bound: the constant is tight, not loose
    # without the constant the concatenation of two LipSwish is not 1-Lipschitz
    raw = _jvp_ratio(lambda t: act(t) * clipswish_constant(), x.detach(), v.detach()).max().item()
    assert raw > 1.003


# ------------------------------------------------------------------------------------------------
# residual blocks with CLipSwish and with the dense branch
# ------------------------------------------------------------------------------------------------


def make_block(channels, ndim, seed=0, strong=True, **kw):
    torch.manual_seed(seed)
    kw.setdefault("hidden", 4)
    block = ResidualBlock(channels, ndim=ndim, **kw).double()
    if strong:
        with torch.no_grad():
            for layer in block.layers:
                layer.weight.mul_(10.0)
            if block.dense_eta is not None:
                block.dense_eta.copy_(torch.rand_like(block.dense_eta) + 0.1)
    return block.eval()


BRANCHES = [
    dict(activation="clipswish"),
    dict(dense=True),
    dict(dense=True, activation="clipswish"),
    dict(dense=True, activation="clipswish", n_layers=4, cond_channels=2),
]


@pytest.mark.parametrize("ndim,shape", [(1, (2, 3, 5)), (2, (2, 2, 3, 3))])
@pytest.mark.parametrize("branch", BRANCHES, ids=lambda b: "-".join(f"{k}={v}" for k, v in b.items()))
def test_roundtrip_and_logdet_against_jacobian(ndim, shape, branch):
    block = make_block(shape[1], ndim, **branch)
    torch.manual_seed(1)
    x = 2 * torch.randn(shape, dtype=F64)
    cond = torch.randn(shape[0], 2, dtype=F64) if branch.get("cond_channels") else None
    z, logdet = block(x, cond)
    assert z.shape == x.shape and logdet.shape == (shape[0],)
    x_back, inv_logdet = block.inverse(z, cond)
    assert (x_back - x).abs().max() < 1e-6  # fixed-point iteration, as tests/test_residual.py
    torch.testing.assert_close(inv_logdet, -logdet, atol=1e-10, rtol=0)
    reference = jacobian_logdet(lambda t: block(t, cond)[0], x)
    torch.testing.assert_close(logdet, reference, atol=1e-7, rtol=0)
    assert (logdet.abs() > 1e-3).all()  # far from the identity: the check has teeth
    # channels: CLipSwish doubles what the next layer takes
    grow = block.hidden * (2 if branch.get("activation") == "clipswish" else 1)
    ins = [layer.in_channels for layer in block.layers]
    if branch.get("dense"):
        assert ins == [shape[1] + i * grow for i in range(len(block.layers))]
        assert block.layers[-1].kernel_size == 1
    else:
        assert ins == [shape[1]] + [grow] * (len(block.layers) - 1)
        assert block.lipschitz_bound() == pytest.approx(math.prod(block.lipschitz_bounds().values()))


@pytest.mark.parametrize("branch", BRANCHES[:3], ids=["clipswish", "dense", "dense-clipswish"])
def test_lipschitz_bound_holds_numerically(branch):
    """||J_g|| (exact spectral norm of the full Jacobian, at random and adversarial points)
    stays below :meth:`ResidualBlock.lipschitz_bound`, which stays below 1."""
    block = make_block(3, 1, **branch, coeff=0.97)
    bound = block.lipschitz_bound()
    assert bound < 1.0
    layer_bounds = list(block.lipschitz_bounds().values())
    if branch.get("dense"):  # each dense layer is at most 1-Lipschitz: the last layer bounds g
        assert bound <= layer_bounds[-1] + 1e-12
        etas = block.dense_weights()
        torch.testing.assert_close(etas.norm(dim=1), torch.ones(etas.shape[0], dtype=F64))
    torch.manual_seed(2)
    worst = 0.0
    for scale in (0.3, 3.0):  # exact ||J_g(x)||_2 from the full Jacobian
        x = scale * torch.randn(1, 3, 12, dtype=F64)
        jac = torch.autograd.functional.jacobian(lambda t: block.residual(t), x).reshape(36, 36)
        worst = max(worst, torch.linalg.matrix_norm(jac, ord=2).item())
    # worst case: gradient ascent on the input x of ||J_g(x) v|| with v kept at the top right
    # singular vector by power iteration (J^T J v), 16 starts at once
    x = (2 * torch.randn(16, 3, 12, dtype=F64)).requires_grad_()
    v = torch.randn(16, 3, 12, dtype=F64)
    opt = torch.optim.Adam([x], lr=0.1)
    for _ in range(40):
        v = v / v.flatten(1).norm(dim=1).reshape(-1, 1, 1)
        _, jv = torch.func.jvp(block.residual, (x,), (v,))
        gain = jv.flatten(1).norm(dim=1)
        worst = max(worst, gain.max().item())
        _, pullback = torch.func.vjp(block.residual, x.detach())
        (jtjv,) = pullback(jv.detach())  # J^T J v
        opt.zero_grad()
        (-gain.sum()).backward()
        opt.step()
        v = jtjv.detach()
    assert worst <= bound + 1e-9
    assert worst > 0.1  # g is far from trivial


def test_dense_eta_weighting_and_gradients():
    block = make_block(3, 1, dense=True, activation="clipswish").train()
    with torch.no_grad():
        block.dense_eta.copy_(torch.tensor([[3.0, 4.0], [0.0, 2.0]]))
    torch.testing.assert_close(block.dense_weights(), torch.tensor([[0.6, 0.8], [0.0, 1.0]], dtype=F64))
    # eta_1 = 0 in the second layer: g no longer sees x directly through it
    x = torch.randn(2, 3, 5, dtype=F64, requires_grad=True)
    z, logdet = block(x)
    (z.square().sum() - logdet.sum()).backward()
    assert block.dense_eta.grad is not None and block.dense_eta.grad.abs().sum() > 0
    for name, p in block.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_bad_branch_configurations():
    with pytest.raises(ValueError, match="unknown residual activation 'elu'"):
        ResidualBlock(3, activation="elu")
    with pytest.raises(ValueError, match="dense residual branch needs n_layers >= 2"):
        ResidualBlock(3, dense=True, n_layers=1)
    with pytest.raises(ValueError, match="logdet_grad must be one of"):
        ResidualBlock(3, logdet_grad="checkpoint")
    with pytest.raises(ValueError, match="contradicts"):
        ResidualBlock(3, neumann_grad=True, logdet_grad="backprop")
    block = ResidualBlock(3)
    assert block.logdet_grad == "backprop" and not block.neumann_grad
    block.neumann_grad = True
    assert block.logdet_grad == "neumann"
    block.logdet_grad = "neumann_memory_efficient"
    block.neumann_grad = True  # keeps the chosen Neumann gradient
    assert block.logdet_grad == "neumann_memory_efficient" and block.neumann_grad
    block.neumann_grad = False
    assert block.logdet_grad == "backprop"


# ------------------------------------------------------------------------------------------------
# memory-efficient log-det gradients
# ------------------------------------------------------------------------------------------------


def _grads(block, x, cond, seed, how):
    """Gradients of a loss that mixes z and the mean log-det, through an op before the block."""
    block.logdet_grad = how
    torch.manual_seed(seed)
    leaf = x.clone().requires_grad_(True)
    cleaf = None if cond is None else cond.clone().requires_grad_(True)
    block.zero_grad()
    z, logdet = block(1.5 * leaf, None if cleaf is None else cleaf * 1.0)
    (0.5 * z.square().sum() - logdet.mean()).backward()
    out = [p.grad.clone() for p in block.parameters()] + [leaf.grad.clone()]
    return out + ([cleaf.grad.clone()] if cleaf is not None else [])


@pytest.mark.parametrize("branch", [dict(), dict(dense=True, activation="clipswish")], ids=["plain", "dense"])
def test_memory_efficient_gradient_equals_current_estimators(branch):
    # eval mode: no power-iteration update between the calls, so every call sees the same weights
    block = make_block(3, 1, cond_channels=2, n_layers=3, **branch)
    torch.manual_seed(3)
    x = torch.randn(3, 3, 5, dtype=F64)
    cond = torch.randn(3, 2, dtype=F64)
    # exact traces, truncated series: every path computes the same deterministic gradient
    block.logdet_mode, block.hutchinson, block.n_series_terms = "series", "exact", 4
    backprop = _grads(block, x, cond, 0, "backprop")
    efficient = _grads(block, x, cond, 0, "neumann_memory_efficient")
    for a, b in zip(efficient, backprop):
        assert a.abs().max() > 0
        torch.testing.assert_close(a, b, atol=1e-11, rtol=1e-9)
    # random probes and the Russian roulette: the same draw (seed) gives the same gradient as
    # the current Neumann path
    block.logdet_mode, block.hutchinson, block.roulette_p = "unbiased", "rademacher", 0.3
    for seed in (4, 5):
        neumann = _grads(block, x, cond, seed, "neumann")
        efficient = _grads(block, x, cond, seed, "neumann_memory_efficient")
        for a, b in zip(efficient, neumann):
            torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10)
    # values are the estimator's, whatever the gradient path
    values = []
    for how in ("backprop", "neumann", "neumann_memory_efficient"):
        block.logdet_grad = how
        torch.manual_seed(6)
        values.append(block(x.clone().requires_grad_(), cond)[1].detach())
    torch.testing.assert_close(values[0], values[1], atol=1e-12, rtol=0)
    torch.testing.assert_close(values[0], values[2], atol=1e-12, rtol=0)


def test_memory_efficient_gradient_in_expectation_equals_exact_logdet_gradient():
    """Many terms and exact traces: the gradient is that of the exact log-det,
    tr((I + J)^-1 dJ) (the Neumann series of the inverse)."""
    block = make_block(3, 1, n_layers=2, activation="clipswish", hutchinson="exact")
    x = torch.randn(2, 3, 4, dtype=F64)
    block.logdet_mode = "exact"
    exact = _grads(block, x, None, 0, "backprop")
    block.logdet_mode, block.n_series_terms = "series", 150
    efficient = _grads(block, x, None, 0, "neumann_memory_efficient")
    for a, b in zip(efficient, exact):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-7)


def test_memory_efficient_refuses_unequal_item_weights():
    block = make_block(3, 1, logdet="series", logdet_grad="neumann_memory_efficient").train()
    x = torch.randn(2, 3, 5, dtype=F64, requires_grad=True)
    _, logdet = block(x)
    with pytest.raises(RuntimeError, match="weights every item's log-det equally"):
        (logdet * torch.tensor([1.0, 2.0], dtype=F64)).sum().backward()
    _, logdet = block(x)
    (3.0 * logdet.sum()).backward()  # equal weights: fine
    assert x.grad is not None


class _LiveSaved:
    """Bytes of the tensors autograd saves for backward that are still alive (by storage)."""

    def __init__(self):
        self.live: dict[int, list] = {}

    def pack(self, t):
        key = t.untyped_storage().data_ptr()
        entry = self.live.setdefault(key, [t.untyped_storage().nbytes(), 0])
        entry[1] += 1
        return _Holder(self, key, t)

    @staticmethod
    def unpack(holder):
        return holder.t

    def bytes(self) -> int:
        return sum(n for n, _ in self.live.values())


class _Holder:
    def __init__(self, owner, key, t):
        self.owner, self.key, self.t = owner, key, t

    def __del__(self):
        entry = self.owner.live.get(self.key)
        if entry is not None:
            entry[1] -= 1
            if entry[1] == 0:
                del self.owner.live[self.key]


def _retained_bytes(how, n_terms, n_blocks=2):
    torch.manual_seed(0)
    blocks = torch.nn.ModuleList(
        ResidualBlock(2, hidden=8, ndim=2, logdet="series", n_series_terms=n_terms, logdet_grad=how).double()
        for _ in range(n_blocks)
    ).train()
    x = torch.randn(2, 2, 5, 5, dtype=F64, requires_grad=True)
    saved = _LiveSaved()
    with torch.autograd.graph.saved_tensors_hooks(saved.pack, saved.unpack):
        h, total = x, 0
        for block in blocks:
            h, logdet = block(h)
            total = total + logdet
        loss = h.square().sum() - total.sum()
    retained = saved.bytes()
    loss.backward()
    assert all(p.grad is not None for p in blocks.parameters())
    return retained


def test_memory_efficient_graph_does_not_grow_with_terms():
    """What the graph keeps for backward after the forward pass: constant in the number of
    series terms with the memory-efficient gradient, growing with backprop, and below the
    ``neumann`` path (which keeps a double-backward graph per block)."""
    efficient = [_retained_bytes("neumann_memory_efficient", n) for n in (2, 8)]
    backprop = [_retained_bytes("backprop", n) for n in (2, 8)]
    neumann = _retained_bytes("neumann", 8)
    assert efficient[0] == efficient[1]
    assert backprop[1] > 1.5 * backprop[0] > 0  # one product graph per term and block
    assert efficient[1] < neumann < backprop[1]


def test_resflow_options_reach_the_blocks():
    model = build_image_flow({"type": "resflow", "levels": 2, "blocks": 1, "hidden": 4, "activation": "clipswish",
                              "dense": True, "logdet_grad": "neumann_memory_efficient", "fc_blocks": 1,
                              "fc_hidden": 8}, (1, 4, 4))
    blocks = model.residual_blocks()
    conv = [b for b in blocks if b.ndim == 2]
    assert conv and all(b.dense and b.activation == "clipswish" for b in conv)
    assert all(not b.dense and b.activation == "lipswish" for b in blocks if b.ndim == 0)
    assert all(b.logdet_grad == "neumann_memory_efficient" for b in blocks)
    model.train()
    x = torch.randint(0, 256, (4, 1, 4, 4))
    model.bits_per_dim(x, torch.rand(4, 1, 4, 4)).mean().backward()
    assert all(p.grad is not None for b in conv for p in b.parameters())


def test_memory_benchmark_measures_the_paths():
    """benchmarks/bench_logdet_memory.py's per-arm measurement, in-process on a tiny model."""
    import argparse
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_logdet_memory.py"
    spec = importlib.util.spec_from_file_location("bench_logdet_memory", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    args = argparse.Namespace(n_terms=8, blocks=2, hidden=8, size=12, batch=4, activation="lipswish", threads=1)
    rows = {arm: bench.child(args, arm) for arm in ("backprop", "neumann_memory_efficient")}
    assert rows["backprop"]["loss"] == pytest.approx(rows["neumann_memory_efficient"]["loss"], abs=1e-6)
    assert rows["backprop"]["peak_mib"] > 1.5 * rows["neumann_memory_efficient"]["peak_mib"] > 0
