"""Variational-inference flows (planar, radial, IAF on vectors) and the 2-D energy targets of
Rezende & Mohamed (2015): exactness, invertibility constraints, energies, log Z, a quick fit."""

from __future__ import annotations

import json
import math

import pytest
import torch

from flowcheck import jacobian_logdet, randomize
from vocoflow.cli.main import main
from vocoflow.flows.base import NonConvergenceError
from vocoflow.flows.vi import PlanarFlow, RadialFlow, VectorIAF
from vocoflow.train.vi import (
    VI_FLOWS,
    VI_TARGETS,
    build_posterior,
    energy,
    evaluate,
    fit,
    log_normalizer,
    parse_models,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture
def f64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _layers():
    g = torch.Generator().manual_seed(3)
    out = []
    for seed in range(3):
        out.append(randomize(PlanarFlow(2), std=1.5, seed=seed))
        out.append(randomize(PlanarFlow(5), std=1.0, seed=seed))
        out.append(randomize(RadialFlow(2), std=1.0, seed=seed))
        out.append(randomize(RadialFlow(4), std=1.0, seed=seed))
    # near the constraint's boundary: the planar map is almost flat along w, the radial
    # one contracts almost to a point
    out.append(PlanarFlow(2, reparametrize=False, u=[-0.99, 0.3], w=[1.0, 0.0], b=0.2))
    out.append(PlanarFlow(3, u=[-50.0, 1.0, 2.0], w=[4.0, 0.5, 0.0], b=-1.0))  # w.u << -1, reparam
    out.append(RadialFlow(2, reparametrize=False, z0=[0.3, -0.2], alpha=0.5, beta=-0.49))
    out.append(RadialFlow(3, reparametrize=False, alpha=2.0, beta=30.0))
    iaf = VectorIAF(3, reverse=True, hidden=8)
    torch.nn.init.normal_(iaf.iaf.net.end.weight, std=0.3, generator=g)
    out.append(iaf)
    return out


@pytest.mark.parametrize("i", range(17))
def test_round_trip_and_logdet_against_autograd(f64, i):
    layer = _layers()[i].double()
    x = torch.randn(4, layer.dim, generator=torch.Generator().manual_seed(i)) * 2
    y, ld = layer(x)
    x2, ld_inv = layer.inverse(y)
    assert torch.allclose(x2, x, atol=1e-10, rtol=0)
    assert torch.allclose(ld_inv, -ld, atol=1e-10)
    assert torch.allclose(ld, jacobian_logdet(lambda t: layer(t)[0], x), atol=1e-9)
    assert torch.allclose(ld_inv, jacobian_logdet(lambda t: layer.inverse(t)[0], y), atol=1e-9)
    # and the other way round: inverse first
    x3, _ = layer.inverse(x)
    assert torch.allclose(layer(x3)[0], x, atol=1e-10, rtol=0)


def test_planar_reparametrisation_keeps_the_constraint(f64):
    for seed in range(20):
        f = randomize(PlanarFlow(3), std=3.0, seed=seed)
        assert float(torch.dot(f.w, f.u_hat())) > -1
    f = PlanarFlow(2, u=[-5.0, 0.0], w=[1.0, 0.0])        # w . u = -5, reparametrised
    wu_hat = float(torch.dot(f.w, f.u_hat()))
    assert wu_hat == pytest.approx(-1 + math.log1p(math.exp(-5.0)), abs=1e-12)


def test_radial_reparametrisation_keeps_the_constraint(f64):
    for seed in range(20):
        f = randomize(RadialFlow(3), std=3.0, seed=seed)
        alpha, beta = f.alpha_beta()
        assert float(beta) > -float(alpha) and float(alpha) > 0


def test_planar_inverse_reports_non_convergence(f64):
    f = PlanarFlow(2, reparametrize=False, u=[-0.999, 0.0], w=[1.0, 0.0], b=0.0, max_iter=1)
    with pytest.raises(NonConvergenceError, match="did not converge in 1 steps"):
        f.inverse(torch.tensor([[0.3, 0.0], [-2.0, 1.0]]))


def test_planar_inverse_gradients_are_the_implicit_ones(f64):
    f = PlanarFlow(2, u=[0.7, -0.4], w=[1.3, 0.8], b=0.1)
    y = torch.randn(3, 2, generator=torch.Generator().manual_seed(0), requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: f.inverse(t)[0], (y,))
    # d x / d b through the numerical solve matches a central difference
    x = f.inverse(y.detach())[0]
    (gb,) = torch.autograd.grad(x.sum(), f.b)
    eps = 1e-6
    with torch.no_grad():
        f.b += eps
        xp = f.inverse(y.detach())[0].sum()
        f.b -= 2 * eps
        xm = f.inverse(y.detach())[0].sum()
    assert float(gb) == pytest.approx(float((xp - xm) / (2 * eps)), rel=1e-6)


def test_bad_configurations_raise_clear_errors():
    with pytest.raises(ValueError, match=r"not invertible: w \. u = -2 < -1"):
        PlanarFlow(2, reparametrize=False, u=[1.0, 0.0], w=[-2.0, 0.0])
    with pytest.raises(ValueError, match="not invertible: beta = -2 < -alpha = -1"):
        RadialFlow(2, reparametrize=False, alpha=1.0, beta=-2.0)
    with pytest.raises(ValueError, match="alpha must be > 0"):
        RadialFlow(2, alpha=0.0)
    with pytest.raises(ValueError, match="u has 3 elements, expected 2"):
        PlanarFlow(2, u=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="dim must be a positive integer"):
        PlanarFlow(0)
    # parameters that drift out of the constraint (no reparametrisation) are caught at use
    f = PlanarFlow(2, reparametrize=False, u=[0.5, 0.0], w=[1.0, 0.0])
    with torch.no_grad():
        f.u.fill_(-3.0)
    with pytest.raises(ValueError, match="not invertible"):
        f(torch.zeros(1, 2))
    r = RadialFlow(2, reparametrize=False, alpha=1.0, beta=0.5)
    with torch.no_grad():
        r.beta.fill_(-5.0)
    with pytest.raises(ValueError, match="not invertible"):
        r.inverse(torch.zeros(1, 2))
    with pytest.raises(ValueError, match=r"built for \(B, 2\) vectors, got \(3, 2, 1\)"):
        PlanarFlow(2)(torch.zeros(3, 2, 1))
    with pytest.raises(ValueError, match="unknown VI flow 'nice'"):
        build_posterior("nice", 2)
    with pytest.raises(ValueError, match="expected FLOW:LENGTH"):
        parse_models("planar")


def _t(*z):
    return torch.tensor([z], dtype=torch.float64)


def test_energies_at_known_points():
    # U1 on the ring (|z| = 2): at (2, 0) one mode is exactly at z1, the other 4 away
    assert float(energy("u1", _t(2.0, 0.0))) == pytest.approx(-math.log1p(math.exp(-0.5 * (4 / 0.6) ** 2)))
    # at (0, 2): both modes 2 away in z1
    assert float(energy("u1", _t(0.0, 2.0))) == pytest.approx(0.5 * (2 / 0.6) ** 2 - math.log(2))
    # off the ring: radius 3 at (0, 3)
    assert float(energy("u1", _t(0.0, 3.0))) == pytest.approx(
        0.5 * (1 / 0.4) ** 2 + 0.5 * (2 / 0.6) ** 2 - math.log(2))
    # U2 = 0 on the sinusoid z2 = sin(pi z1 / 2), quadratic across it
    assert float(energy("u2", _t(1.0, 1.0))) == pytest.approx(0.0, abs=1e-12)
    assert float(energy("u2", _t(0.0, 0.8))) == pytest.approx(0.5 * (0.8 / 0.4) ** 2)
    # U3 at z1 = 1: w1 = 1, w2 = 3; halfway between the branches z2 = 1 and z2 = -2
    assert float(energy("u3", _t(1.0, -0.5))) == pytest.approx(0.5 * (1.5 / 0.35) ** 2 - math.log(2))
    # U4 at z1 = 1: w3 = 3 sigmoid(0) = 1.5; branches z2 = 1 (scale 0.4) and z2 = -0.5 (0.35)
    a, b = -0.5 * (0.75 / 0.4) ** 2, -0.5 * (0.75 / 0.35) ** 2
    assert float(energy("u4", _t(1.0, 0.25))) == pytest.approx(-math.log(math.exp(a) + math.exp(b)))
    # U3, z1 = 0: w1 = 0, w2 = 3 exp(-0.5 / 0.36)
    w2 = 3 * math.exp(-0.5 * (1 / 0.6) ** 2)
    a, b = -0.5 * (0.2 / 0.35) ** 2, -0.5 * ((0.2 + w2) / 0.35) ** 2
    assert float(energy("u3", _t(0.0, 0.2))) == pytest.approx(-math.log(math.exp(a) + math.exp(b)))


def test_the_wall_confines_u2_to_u4_outside_the_papers_window():
    z = torch.tensor([[3.9, 0.3], [-4.0, 1.0], [4.5, 0.2], [-5.0, -1.0]], dtype=torch.float64)
    for name in ("u2", "u3", "u4"):
        t = VI_TARGETS.get(name).cls
        wall = t.energy(z) - energy(name, z)
        expected = torch.tensor([0.0, 0.0, 0.5 * (0.5 / 0.4) ** 2, 0.5 * (1 / 0.4) ** 2], dtype=torch.float64)
        assert torch.allclose(wall, expected)
    t = VI_TARGETS.get("u1").cls
    assert torch.equal(t.energy(z), energy("u1", z))


def test_log_normalizer_against_closed_forms():
    # U2 plus the wall: every z1 contributes 0.4 sqrt(2 pi); along z1, 8 flat plus two
    # half-Gaussians of scale 0.4
    s = math.sqrt(2 * math.pi)
    assert log_normalizer(VI_TARGETS.get("u2").cls, n=1601) == pytest.approx(
        math.log(0.4 * s * (8 + 0.4 * s)), abs=1e-7)  # the wall's kink: O(h^2), not better
    assert log_normalizer(VI_TARGETS.get("gauss").cls, n=801) == pytest.approx(
        math.log(2 * math.pi * 0.5 * 1.5), abs=1e-9)
    u1 = VI_TARGETS.get("u1").cls
    assert log_normalizer(u1, n=801) == pytest.approx(log_normalizer(u1, n=1201), abs=1e-8)


def test_quick_planar_fit_to_a_gaussian_reduces_the_kl():
    torch.manual_seed(0)
    target = VI_TARGETS.get("gauss").cls
    log_z = math.log(2 * math.pi * 0.5 * 1.5)
    q = build_posterior("planar", 4, base="standard")
    before = evaluate(q, target, log_z, n=8192)["kl"]
    fit(q, target, steps=300, batch=256, lr=2e-2, seed=0)
    after = evaluate(q, target, log_z, n=8192)
    assert before > 0.5 and after["kl"] < 0.1, (before, after)
    assert after["elbo"] == pytest.approx(log_z - after["kl"])
    # the MC KL agrees with the KL integrated on a grid from the density through the inverse
    h = 0.05
    c = torch.arange(-8 + h / 2, 8, h)
    gx, gy = torch.meshgrid(c, c, indexing="xy")
    pts = torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)
    with torch.no_grad():
        log_q = q.log_prob(pts).double()
    dq = log_q.exp() * h * h
    assert float(dq.sum()) == pytest.approx(1.0, abs=2e-3)
    kl_grid = float((dq * (log_q + target.energy(pts.double()))).sum()) + log_z
    assert kl_grid == pytest.approx(after["kl"], abs=4 * after["stderr"] + 5e-3)


def test_registries_and_posteriors_of_every_flow():
    assert list(VI_FLOWS) == ["planar", "radial", "iaf"]
    assert {"u1", "u2", "u3", "u4"} <= set(VI_TARGETS)
    for name in VI_FLOWS:
        q = build_posterior(name, 2)
        x, log_q = q.sample(5, torch.Generator().manual_seed(0))
        with torch.no_grad():
            assert torch.allclose(q.log_prob(x), log_q, atol=1e-4)


def test_fit_vi_command_writes_results_and_png(tmp_path, capsys):
    out = tmp_path / "vi"
    rc = main(["fit-vi", "--target", "gauss", "--flow", "planar,radial", "--length", "1",
               "--steps", "5", "--eval-samples", "64", "--out", str(out), "--no-progress"])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    models = res["targets"]["gauss"]["models"]
    assert set(models) == {"planar:1", "radial:1"}
    for r in models.values():
        assert r["elbo"] == pytest.approx(res["targets"]["gauss"]["log_z"] - r["kl"])
    assert (out / "densities.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    capsys.readouterr()


@pytest.mark.parametrize("argv, message", [
    (["--target", "u9"], "unknown VI target 'u9' (known: u1, u2, u3, u4, gauss)"),
    (["--models", "planar:2,glow:3"], "unknown VI flow 'glow' (known: planar, radial, iaf)"),
    (["--length", "2,x"], "--length: 'x' is not a non-negative integer"),
])
def test_fit_vi_bad_arguments_are_one_line_errors(tmp_path, capsys, argv, message):
    out = tmp_path / "vi"
    assert main(["fit-vi", *argv, "--steps", "1", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"vocoflow fit-vi: error: {message}"
    assert not out.exists()
