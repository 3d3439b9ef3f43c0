"""Image flows: invertibility, log-determinants against autograd Jacobians, bits/dim with the
data-scaling change of variables, sampling, dequantisation, config building and saving."""

from __future__ import annotations

import math

import pytest
import torch

from flowcheck import jacobian_logdet, randomize
from vocoflow.flows import Logistic, Sequential
from vocoflow.images import (
    DataScaling,
    ImageFlow,
    UniformBox,
    VariationalDequantizer,
    build_image_flow,
    load_image_flow,
    uniform_noise,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

EXACT_TOL = 1e-9
ITERATIVE_TOL = 1e-6
LOGDET_TOL = 1e-7

# (config, image shape, iterative inverse?)
MODELS = {
    "nice": ({"type": "nice", "hidden": 8, "n_hidden_layers": 2}, (1, 4, 4), False),
    "realnvp": ({"type": "realnvp", "hidden": 8, "n_blocks": 1}, (1, 4, 4), False),
    "realnvp_sigmoid": ({"type": "realnvp", "hidden": 8, "n_blocks": 1, "scale": "sigmoid"}, (1, 4, 4), False),
    "realnvp_3scales": ({"type": "realnvp", "hidden": 4, "n_blocks": 1, "n_scales": 3}, (1, 4, 4), False),
    "glow_affine_lu": ({"type": "glow", "levels": 2, "steps": 2, "hidden": 8}, (1, 4, 4), False),
    "glow_additive_rgb": ({"type": "glow", "levels": 2, "steps": 1, "hidden": 8, "coupling": "additive",
                           "lu": False}, (3, 4, 4), False),
    "glow_logit": ({"type": "glow", "levels": 1, "steps": 2, "hidden": 8, "scaling": "logit"}, (1, 4, 4), False),
    "resflow": ({"type": "resflow", "levels": 2, "blocks": 1, "hidden": 8,
                 "logdet_eval": {"logdet": "exact"}}, (1, 4, 4), True),
    "resflow_factor_out_fc": ({"type": "resflow", "levels": 2, "blocks": 1, "hidden": 8, "factor_out": True,
                               "fc_blocks": 1, "fc_hidden": 8, "logdet_eval": {"logdet": "exact"}},
                              (1, 4, 4), True),
}


def _model(name, seed=0):
    cfg, shape, iterative = MODELS[name]
    torch.manual_seed(seed)
    model = build_image_flow(cfg, shape).double()
    model.train()
    randomize(model, std=0.05, seed=seed)  # move off the identity initialisation
    model.eval()  # residual flows: refreshes the spectral norms, selects the exact log-det
    return model, shape, iterative


def _pixels(shape, n=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, *shape, generator=g, dtype=torch.float64) * 250 + 3


@pytest.mark.parametrize("name", list(MODELS))
def test_invertible_and_logdet_matches_jacobian(name):
    model, shape, iterative = _model(name)
    x = _pixels(shape)
    z, logdet = model(x)
    assert z.shape == x.shape and logdet.shape == (2,)
    x_back, inv_logdet = model.bijector.inverse(z)
    tol = ITERATIVE_TOL if iterative else EXACT_TOL
    assert float((x_back - x).detach().abs().max()) < tol
    assert torch.allclose(inv_logdet, -logdet, atol=tol, rtol=0)
    # the full map, data scaling included, against the autograd Jacobian (z does not depend on
    # how residual blocks estimate their log-det: use the cheapest setting for it)
    with model.logdet_settings(logdet="series", n_series_terms=1):
        expected = jacobian_logdet(lambda v: model(v)[0], x)
    assert torch.allclose(logdet, expected, atol=LOGDET_TOL, rtol=0), (logdet, expected)


@pytest.mark.parametrize("kind,alpha", [("centered", 0.0), ("unit", 0.0), ("logit", 0.05), ("logit", 0.0)])
def test_data_scaling_logdet_and_inverse(kind, alpha):
    s = DataScaling(kind, alpha).double()
    x = _pixels((1, 2, 3), n=3)
    y, ld = s(x)
    assert torch.allclose(ld, jacobian_logdet(lambda v: s(v)[0], x), atol=1e-10, rtol=0)
    x_back, ild = s.inverse(y)
    assert torch.allclose(x_back, x, atol=1e-9, rtol=0) and torch.allclose(ild, -ld, atol=1e-9)


def _dequantized_8bit(n=16, shape=(1, 4, 4), seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, *shape), generator=g)
    noise = torch.rand(n, *shape, generator=g, dtype=torch.float64)
    noise = noise.clamp(1e-6, 1 - 1e-6)  # logit scaling with alpha = 0 needs x + u in (0, 256)
    return x, noise


def test_identity_flow_on_uniform_box_scores_exactly_8_bits():
    # uniform on [-0.5, 0.5)^D after x / 256 - 0.5: the uniform density on [0, 256)^D
    model = ImageFlow(Sequential(), (1, 4, 4), base=UniformBox(), scaling="centered").double()
    x, noise = _dequantized_8bit()
    bpd = model.bits_per_dim(x, noise)
    assert torch.equal(bpd, torch.full_like(bpd, 8.0))


def test_identity_flow_in_logit_space_with_logistic_prior_scores_8_bits():
    # logit(x / 256) of uniform data is standard logistic: the change of variables makes it 8
    model = ImageFlow(Sequential(), (1, 4, 4), base=Logistic(), scaling="logit", alpha=0.0).double()
    x, noise = _dequantized_8bit()
    bpd = model.bits_per_dim(x, noise)
    assert torch.allclose(bpd, torch.full_like(bpd, 8.0), atol=1e-12, rtol=0)


def test_bits_per_dim_is_nll_in_bits_of_the_dequantised_data():
    model, shape, _ = _model("glow_affine_lu")
    x, noise = _dequantized_8bit(4, shape)
    manual = -model.log_prob(x.double() + noise) / (math.prod(shape) * math.log(2))
    assert torch.allclose(model.bits_per_dim(x, noise), manual, atol=1e-12)
    assert float(model.nll(x.double() + noise, bits=True).detach()) == pytest.approx(float(manual.mean().detach()))


@pytest.mark.parametrize("name", ["nice", "realnvp", "glow_affine_lu", "glow_additive_rgb", "resflow"])
def test_sample_shapes_and_ranges(name):
    model, shape, _ = _model(name)
    imgs = model.sample_images(5, temperature=0.7, generator=torch.Generator().manual_seed(0))
    assert imgs.shape == (5, *shape) and imgs.dtype == torch.uint8
    cfg, shape, _ = MODELS[name]
    if cfg["type"] == "resflow":  # residual branches are random at initialisation
        return
    # coupling flows start as the identity: at temperature 0 they decode the latent 0, which
    # is mid-grey for centred and logit scaling and black for NICE's [0, 1) scaling
    fresh = build_image_flow(cfg, shape).eval()
    mid = fresh.sample_images(2, temperature=0.0)
    expected = 0 if cfg["type"] == "nice" else 128
    assert torch.equal(mid, torch.full_like(mid, expected))


def test_encode_and_temperature_sampling():
    model, shape, _ = _model("glow_affine_lu")
    z = model.encode(torch.randint(0, 256, (3, *shape)))
    assert z.shape == (3, *shape)
    cont = model.sample((4000, *shape), temperature=0.5, generator=torch.Generator().manual_seed(0))
    assert cont.shape == (4000, *shape) and torch.isfinite(cont).all()


def test_encode_decode_round_trip_on_bin_centres():
    model, shape, _ = _model("realnvp")
    x = torch.randint(0, 256, (3, *shape), dtype=torch.uint8)
    assert torch.equal(model.decode(model.encode(x)), x)


def test_variational_dequantizer_density_matches_jacobian():
    torch.manual_seed(0)
    deq = randomize(VariationalDequantizer(1, n_couplings=2, hidden=4).double(), std=0.1)
    x = torch.randint(0, 256, (2, 1, 2, 2)).double()
    noise = torch.rand(2, 1, 2, 2, dtype=torch.float64) * 0.9 + 0.05
    u, log_q = deq(x, noise)
    assert ((u > 0) & (u < 1)).all()
    # noise is uniform (density 1), so log q(u | x) = -log|det du/dnoise|
    expected = -jacobian_logdet(lambda n: deq(x, n)[0], noise)
    assert torch.allclose(log_q, expected, atol=1e-9, rtol=0)


def test_variational_dequantization_starts_uniform_and_trains():
    cfg = {"type": "glow", "levels": 1, "steps": 1, "hidden": 8, "dequantization": "variational",
           "dequantizer": {"n_couplings": 2, "hidden": 4}}
    model = build_image_flow(cfg, (1, 4, 4)).double()
    plain = build_image_flow({**cfg, "dequantization": "uniform"}, (1, 4, 4)).double()
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("dequantizer")})
    x, noise = _dequantized_8bit(4)
    assert torch.allclose(model.bits_per_dim(x, noise), plain.bits_per_dim(x, noise), atol=1e-9)
    loss = model.bits_per_dim(x, noise).mean()
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.dequantizer.parameters())


def test_resflow_uses_unbiased_logdet_in_training_and_tighter_in_eval():
    model = build_image_flow({"type": "resflow", "levels": 1, "blocks": 1, "hidden": 4}, (1, 4, 4))
    blocks = model.residual_blocks()
    assert blocks and all(b.logdet_mode == "unbiased" and b.n_exact_terms == 2 for b in blocks)
    model.eval()
    assert all(b.logdet_mode == "unbiased" and b.n_exact_terms == 20 and b.n_hutchinson == 4 for b in blocks)
    with model.logdet_settings(logdet="exact"):
        assert blocks[0].logdet_mode == "exact"
    assert blocks[0].logdet_mode == "unbiased"
    model.train()
    assert blocks[0].n_exact_terms == 2


def test_uniform_noise_is_per_item_and_per_step():
    a = uniform_noise((1, 2, 2), [0, 1, 2], seed=5, step=3)
    assert torch.equal(a[1:], uniform_noise((1, 2, 2), [1, 2], seed=5, step=3))
    assert not torch.equal(a, uniform_noise((1, 2, 2), [0, 1, 2], seed=5, step=4))
    assert float(a.min()) >= 0 and float(a.max()) < 1


def test_build_errors():
    with pytest.raises(ValueError, match="model.type"):
        build_image_flow({"type": "flowpp"}, (1, 4, 4))
    with pytest.raises(ValueError, match="unknown option"):
        build_image_flow({"type": "glow", "K": 3}, (1, 4, 4))
    with pytest.raises(ValueError, match="divisible"):
        build_image_flow({"type": "glow", "levels": 3}, (1, 4, 4))


def test_save_and_load_round_trip(tmp_path):
    model, shape, _ = _model("glow_affine_lu")
    model.float().save(tmp_path / "model.pt")
    loaded = load_image_flow(tmp_path)
    x, noise = _dequantized_8bit(3, shape)
    assert torch.allclose(loaded.bits_per_dim(x, noise.float()), model.bits_per_dim(x, noise.float()))
