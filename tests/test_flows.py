"""Exactness of every bijector: inverse, log-determinant against autograd Jacobians."""

from __future__ import annotations

import math

import pytest
import torch

from flowcheck import jacobian_logdet, randomize
from vocoflow.flows import (
    IAF,
    ActNorm,
    AdditiveCoupling,
    AffineCoupling,
    ConvNet,
    Flow,
    Inverse,
    Invertible1x1Conv,
    Logistic,
    MixLogisticCoupling,
    Normal,
    Reverse,
    Scale,
    Sequential,
    Shuffle,
    Split,
    Squeeze,
)
from vocoflow.flows.base import NonConvergenceError
from vocoflow.flows.elementwise import MixLogisticMap

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(autouse=True)
def _float64():
    """Every check here runs in float64; restore the default afterwards (shared workers)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)

AUDIO = (2, 4, 6)
IMAGE = (2, 4, 4, 4)
VECTOR = (3, 6)


def _mini_waveglow(cond_ch):
    # squeeze 1 channel of 24 samples into 4 groups; 1x1 conv + coupling; early output of 2
    return Sequential(
        Squeeze(4),
        Invertible1x1Conv(4, seed=1),
        AffineCoupling(4, cond_channels=cond_ch, hidden=8),
        Split(2, Sequential(Invertible1x1Conv(2, lu=True, seed=2),
                            AffineCoupling(2, cond_channels=cond_ch, hidden=8, scale="exp"))),
    )


def _multiscale_image():
    inner = Sequential(Squeeze(2), ActNorm(8), AffineCoupling(8, ndim=2, hidden=8),
                       Inverse(Squeeze(2)))
    prior = ConvNet(2, 4, hidden=8, n_layers=2, ndim=2)
    return Sequential(
        AffineCoupling(4, mask="checkerboard", ndim=2, hidden=8),
        Split(2, inner, prior=prior),
    )


# name -> (factory, input shape, cond shape or None, iterative?)
CASES = {
    "additive-channel": (lambda: AdditiveCoupling(4, hidden=8), AUDIO, None, False),
    "additive-channel-cond": (lambda: AdditiveCoupling(4, cond_channels=3, hidden=8, parity=1),
                              AUDIO, (2, 3, 6), False),
    "additive-vector": (lambda: AdditiveCoupling(6, ndim=0, hidden=8), VECTOR, None, False),
    "additive-checkerboard": (lambda: AdditiveCoupling(4, mask="checkerboard", ndim=2, hidden=8),
                              IMAGE, None, False),
    "affine-channel-cond": (lambda: AffineCoupling(4, cond_channels=3, hidden=8),
                            AUDIO, (2, 3, 6), False),
    "affine-exp": (lambda: AffineCoupling(5, scale="exp", hidden=8), (2, 5, 6), None, False),
    "affine-sigmoid": (lambda: AffineCoupling(4, scale="sigmoid", hidden=8, parity=1),
                       AUDIO, None, False),
    "affine-global-cond": (lambda: AffineCoupling(4, cond_channels=2, hidden=8),
                           AUDIO, (2, 2), False),
    "affine-checkerboard": (lambda: AffineCoupling(4, mask="checkerboard", parity=1, ndim=2,
                                                   cond_channels=2, hidden=8),
                            IMAGE, (2, 2, 4, 4), False),
    "affine-channel-image": (lambda: AffineCoupling(4, ndim=2, hidden=8), IMAGE, None, False),
    "mixlogistic-channel-cond": (lambda: MixLogisticCoupling(4, n_components=3, cond_channels=2,
                                                             hidden=8), AUDIO, (2, 2, 6), True),
    "mixlogistic-checkerboard": (lambda: MixLogisticCoupling(2, mask="checkerboard", ndim=2,
                                                             hidden=8), (2, 2, 3, 3), None, True),
    "scale-channel": (lambda: Scale(4), AUDIO, None, False),
    "scale-elementwise": (lambda: Scale((4, 6)), AUDIO, None, False),
    "scale-vector": (lambda: Scale(6), VECTOR, None, False),
    "actnorm-audio": (lambda: ActNorm(4), AUDIO, None, False),
    "actnorm-image": (lambda: ActNorm(4), IMAGE, None, False),
    "reverse": (lambda: Reverse(), AUDIO, None, False),
    "shuffle": (lambda: Shuffle(4, seed=3), IMAGE, None, False),
    "1x1conv": (lambda: Invertible1x1Conv(4, seed=0), AUDIO, None, False),
    "1x1conv-lu": (lambda: Invertible1x1Conv(4, lu=True, seed=0), AUDIO, None, False),
    "1x1conv-image": (lambda: Invertible1x1Conv(4, seed=5), IMAGE, None, False),
    "1x1conv-lu-image": (lambda: Invertible1x1Conv(4, lu=True, seed=5), IMAGE, None, False),
    "squeeze-audio": (lambda: Squeeze(3), AUDIO, None, False),
    "squeeze-image": (lambda: Squeeze(2), IMAGE, None, False),
    "unsqueeze": (lambda: Inverse(Squeeze(2)), AUDIO, None, False),
    "split-waveglow": (lambda: _mini_waveglow(2), (2, 1, 24), (2, 2, 6), False),
    "split-multiscale-image": (_multiscale_image, IMAGE, None, False),
    "iaf-affine": (lambda: IAF(2, hidden=8, n_layers=2), (2, 2, 7), None, True),
    "iaf-affine-cond": (lambda: IAF(1, cond_channels=3, hidden=8, n_layers=3), (2, 1, 9),
                        (2, 3, 9), True),
    "iaf-mixlogistic": (lambda: IAF(1, map="mixlogistic", map_kwargs={"n_components": 3},
                                    cond_channels=2, hidden=8, n_layers=2), (2, 1, 6),
                        (2, 2, 6), True),
    "iaf-additive": (lambda: IAF(1, map="additive", hidden=8, n_layers=2), (2, 1, 6), None,
                     True),
}


def build(name, seed=0):
    factory, shape, cond_shape, iterative = CASES[name]
    torch.manual_seed(seed)
    layer = factory().double()
    x = torch.randn(shape) * 0.8
    cond = torch.randn(cond_shape) if cond_shape else None
    layer.train()
    layer(x, cond)  # data-dependent initialisation where a layer has one
    # autoregressive recursions amplify large random weights: perturb them less
    randomize(layer, std=0.1 if name.startswith("iaf") else 0.3, seed=seed)
    return layer, x, cond, iterative


@pytest.mark.parametrize("name", sorted(CASES))
def test_inverse_and_logdet_against_jacobian(name):
    layer, x, cond, iterative = build(name)
    z, ld = layer(x, cond)
    assert z.shape[0] == x.shape[0] and z.numel() == x.numel()
    assert ld.shape == (x.shape[0],)
    x_rec, ld_inv = layer.inverse(z, cond)
    err = (x_rec - x).abs().max().item()
    assert err < (1e-6 if iterative else 1e-9), f"reconstruction error {err}"
    ref = jacobian_logdet(lambda inp: layer(inp, cond)[0], x)
    assert torch.allclose(ld, ref, atol=1e-7, rtol=0), (ld, ref)
    assert torch.allclose(ld_inv, -ld, atol=1e-7, rtol=0)
    # the inverse log-det is that of the inverse map's own Jacobian
    ref_inv = jacobian_logdet(lambda inp: layer.inverse(inp, cond)[0], z.detach())
    assert torch.allclose(ld_inv, ref_inv, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradients_reach_every_parameter(name):
    layer, x, cond, _ = build(name, seed=1)
    x.requires_grad_(True)
    z, ld = layer(x, cond)
    loss = (z ** 2).sum() - ld.sum()
    loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for pname, p in layer.named_parameters():
        assert p.grad is not None, f"{name}: no gradient for {pname}"
        assert torch.isfinite(p.grad).all()
        assert p.grad.abs().sum() > 0, f"{name}: zero gradient for {pname}"


@pytest.mark.parametrize("factory", [
    lambda: AdditiveCoupling(4, cond_channels=2),
    lambda: AffineCoupling(4, cond_channels=2),
    lambda: AffineCoupling(4, cond_channels=2, scale="exp"),
    lambda: AffineCoupling(4, cond_channels=2, scale="sigmoid"),
    lambda: IAF(4, cond_channels=2),
])
def test_fresh_couplings_are_exactly_identity(factory):
    layer = factory()
    x, c = torch.randn(3, 4, 10), torch.randn(3, 2, 10)
    z, ld = layer(x, c) if not isinstance(layer, IAF) else layer.inverse(x, c)
    assert torch.equal(z, x)
    assert torch.equal(ld, torch.zeros(3))


def test_fresh_mixlogistic_is_identity_to_rounding():
    layer = MixLogisticCoupling(4, n_components=5)
    x = torch.randn(3, 4, 10) * 3
    z, ld = layer(x)
    assert (z - x).abs().max() < 1e-12
    assert ld.abs().max() < 1e-12


def test_1x1conv_negative_determinant():
    conv = Invertible1x1Conv(3, seed=0)
    with torch.no_grad():
        conv.weight.copy_(torch.diag(torch.tensor([-2.0, 0.5, 3.0])))
    x = torch.randn(2, 3, 5)
    _, ld = conv(x)
    assert torch.allclose(ld, torch.full((2,), 5 * math.log(3.0)))
    assert torch.allclose(ld, jacobian_logdet(lambda i: conv(i)[0], x))


def test_1x1conv_lu_negative_determinant():
    conv = Invertible1x1Conv(4, lu=True, seed=0)
    with torch.no_grad():
        conv.sign[0] = -conv.sign[0]
    assert torch.linalg.det(conv.matrix()) * torch.linalg.det(
        Invertible1x1Conv(4, lu=True, seed=0).matrix()) < 0
    x = torch.randn(2, 4, 3)
    _, ld = conv(x)
    assert torch.allclose(ld, jacobian_logdet(lambda i: conv(i)[0], x))


@pytest.mark.parametrize("lu", [False, True])
def test_1x1conv_inverse_never_stale(lu):
    conv = Invertible1x1Conv(4, lu=lu, seed=0).eval()
    x = torch.randn(2, 4, 5)
    with torch.no_grad():
        z, _ = conv(x)
        assert torch.allclose(conv.inverse(z)[0], x)  # fills the cache
        for p in conv.parameters():
            p.add_(0.1 * torch.randn_like(p))  # an in-place "optimizer step"
        z2, _ = conv(x)
        assert torch.allclose(conv.inverse(z2)[0], x, atol=1e-10)
    opt = torch.optim.SGD(conv.parameters(), lr=0.1)
    conv.train()
    conv(x)[0].sum().backward()
    opt.step()
    with torch.no_grad():
        conv.eval()
        z3, _ = conv(x)
        assert torch.allclose(conv.inverse(z3)[0], x, atol=1e-10)


def test_actnorm_data_init_and_state_dict():
    norm = ActNorm(3)
    x = torch.randn(16, 3, 20) * torch.tensor([1.0, 5.0, 0.1]).reshape(1, 3, 1) + 7
    z, _ = norm(x)
    assert torch.allclose(z.mean(dim=(0, 2)), torch.zeros(3), atol=1e-10)
    assert torch.allclose(z.std(dim=(0, 2), unbiased=False), torch.ones(3), atol=1e-5)
    state = norm.state_dict()
    assert bool(state["initialized"])
    fresh = ActNorm(3)
    fresh.load_state_dict(state)
    z2, _ = fresh(torch.randn(4, 3, 20))  # must not re-initialise on this batch
    assert torch.equal(fresh.bias, norm.bias)
    assert torch.allclose(fresh(x)[0], z)


def test_shuffle_saved():
    s = Shuffle(7, seed=None)
    t = Shuffle(7, seed=None)
    t.load_state_dict(s.state_dict())
    x = torch.randn(2, 7, 3)
    assert torch.equal(s(x)[0], t(x)[0])


def test_squeeze_layout_matches_waveglow_grouping():
    x = torch.arange(16.0).reshape(1, 1, 16)
    z, _ = Squeeze(8)(x)
    # channel j at step t holds sample t*8 + j
    assert z.shape == (1, 8, 2)
    assert z[0, 3, 1] == 11
    img = torch.arange(16.0).reshape(1, 1, 4, 4)
    zi, _ = Squeeze(2)(img)
    assert zi.shape == (1, 4, 2, 2)
    assert zi[0, :, 0, 0].tolist() == [0.0, 1.0, 4.0, 5.0]


def test_iaf_causality_by_perturbation():
    torch.manual_seed(0)
    step = randomize(IAF(2, cond_channels=1, hidden=8, n_layers=3).double(), std=0.3)
    z, c = torch.randn(1, 2, 16), torch.randn(1, 1, 16)
    params = step.net(z, c)
    x, _ = step.inverse(z, c)
    t0 = 9
    z2 = z.clone()
    z2[..., t0:] += torch.randn(1, 2, 16 - t0)
    params2 = step.net(z2, c)
    x2, _ = step.inverse(z2, c)
    # parameters at t <= t0 ignore inputs at >= t0; outputs before t0 unchanged
    assert torch.equal(params[..., : t0 + 1], params2[..., : t0 + 1])
    assert torch.equal(x[..., :t0], x2[..., :t0])
    assert not torch.equal(params[..., t0 + 1:], params2[..., t0 + 1:])


def test_iaf_sampling_is_one_parallel_pass():
    step = IAF(1, hidden=8, n_layers=2)
    calls = []
    step.net.register_forward_hook(lambda *a: calls.append(1))
    for t in (8, 64, 512):
        calls.clear()
        step.inverse(torch.randn(2, 1, t))
        assert len(calls) == 1  # one network evaluation, whatever the length


def test_mixlogistic_bisection_reports_nonconvergence():
    m = MixLogisticMap(3, tol=1e-14, max_iter=2)
    params = torch.randn(2, 11, 5)
    with pytest.raises(NonConvergenceError, match="bisection"):
        m.inverse(torch.randn(2, 1, 5) * 3, params)


def test_mixlogistic_inverse_gradients_match_implicit_function():
    m = MixLogisticMap(3)
    params = torch.randn(1, 11, 4, requires_grad=True)
    y = torch.randn(1, 1, 4, requires_grad=True)
    x, _ = m.inverse(y, params)
    gy, = torch.autograd.grad(x.sum(), y, retain_graph=True)
    # dx/dy = 1 / (dy/dx) at the solution
    _, ld = m.forward(x.detach(), params)
    assert torch.allclose(gy, torch.exp(-ld).detach(), rtol=1e-6)


def test_flow_log_prob_and_bits():
    torch.manual_seed(0)
    bij = randomize(Sequential(ActNorm(2), AffineCoupling(2, hidden=8)).double())
    flow = Flow(Normal(sigma=0.7), bij)
    x = torch.randn(5, 2, 6)
    z, ld = bij(x)
    ref = torch.distributions.Normal(0.0, 0.7).log_prob(z).sum(dim=(1, 2)) + ld
    assert torch.allclose(flow.log_prob(x), ref)
    assert torch.allclose(flow.nll(x, bits=True), flow.nll(x) / math.log(2))
    assert torch.allclose(flow.nll(x), -ref.mean() / 12)
    s = flow.sample((4, 2, 6), temperature=0.0)
    assert torch.allclose(bij(s)[0], torch.zeros(4, 2, 6), atol=1e-10)


def test_logistic_base_matches_torch():
    lg = Logistic()
    z = torch.randn(3, 4) * 3
    ref = torch.distributions.TransformedDistribution(
        torch.distributions.Uniform(0.0, 1.0),
        [torch.distributions.SigmoidTransform().inv]).log_prob(z).sum(1)
    assert torch.allclose(lg.log_prob(z), ref)
    samples = lg.sample((20000,), generator=torch.Generator().manual_seed(0))
    assert abs(samples.std().item() - math.pi / math.sqrt(3)) < 0.05


@pytest.mark.parametrize("bad", [
    lambda: AffineCoupling(4)(torch.randn(2, 5, 3)),
    lambda: Squeeze(4)(torch.randn(2, 1, 10)),
    lambda: Invertible1x1Conv(3)(torch.randn(2, 4, 3)),
    lambda: AffineCoupling(4, cond_channels=2)(torch.randn(2, 4, 3)),
    lambda: AffineCoupling(4, cond_channels=2)(torch.randn(2, 4, 3), torch.randn(2, 2, 5)),
    lambda: IAF(1)(torch.randn(2, 2, 3)),
])
def test_bad_shapes_raise_clear_errors(bad):
    with pytest.raises(ValueError):
        bad()
