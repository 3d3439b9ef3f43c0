"""DenseFlow's cross-unit coupling (CrossUnitAugment) and the ``denseflow`` image model: log q
against torch.distributions, the augmented bound on a Gaussian problem against its analytic
value (below the exact log-likelihood, tight at the true posterior), exact removal of the noise,
the importance-weighted bound, sampling and bad configurations."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from flowcheck import randomize
from vocoflow.flows import AffineCoupling, Bijector, ConvNet, Normal, Sequential
from vocoflow.flows.augment import CrossUnitAugment
from vocoflow.images import IMAGE_MODELS, build_image_flow, denseflow
from vocoflow.train.image_task import evaluate_bpd

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(autouse=True)
def _float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


# -- the layer ---------------------------------------------------------------------------------


@pytest.mark.parametrize("shape,ndim", [((3, 2, 7), 1), ((3, 2, 4, 4), 2)])
def test_log_q_matches_a_direct_normal_density(shape, ndim):
    aug = randomize(CrossUnitAugment(2, 3, ndim=ndim, hidden=6), std=0.5, seed=1)
    x = torch.randn(shape)
    e = torch.randn(shape[0], 3, *shape[2:])
    z, neg_log_q = aug(x, noise=e)
    # mu and sigma read off the conditioner's raw output (sigma = exp(5 tanh(h / 5)))
    mu, h = aug.net(x).chunk(2, dim=1)
    sigma = torch.exp(5.0 * torch.tanh(h / 5.0))
    assert torch.equal(z[:, :2], x)
    assert torch.allclose(z[:, 2:], mu + sigma * e, atol=1e-12)
    ref = torch.distributions.Normal(mu, sigma).log_prob(z[:, 2:]).flatten(1).sum(1)
    assert neg_log_q.dtype == torch.float64 and neg_log_q.shape == (shape[0],)
    assert torch.allclose(-neg_log_q, ref, atol=1e-10)
    # inverse: drops the noise exactly and returns +log q at the matching point
    x_back, log_q = aug.inverse(z)
    assert torch.equal(x_back, x)
    assert torch.allclose(log_q, ref, atol=1e-10)


def test_inverse_through_following_flow_units_reconstructs_x():
    torch.manual_seed(0)
    aug = randomize(CrossUnitAugment(2, 2, ndim=1, hidden=4), std=0.5, seed=2)
    coupling = randomize(AffineCoupling(4, hidden=4), std=0.3, seed=3)
    flow = Sequential(aug, coupling)
    x = torch.randn(5, 2, 6)
    z, _ = flow(x)
    assert z.shape == (5, 4, 6)
    x_back, _ = flow.inverse(z)
    assert torch.allclose(x_back, x, atol=1e-12)


def test_noise_is_drawn_from_the_generator_when_not_given():
    aug = CrossUnitAugment(1, 2, ndim=1, hidden=4)
    x = torch.randn(2, 1, 3)
    aug.generator = torch.Generator().manual_seed(7)
    z1, ld1 = aug(x)
    aug.generator = torch.Generator().manual_seed(7)
    z2, ld2 = aug(x)
    expected = torch.randn(2, 2, 3, generator=torch.Generator().manual_seed(7))
    assert torch.equal(z1, z2) and torch.equal(ld1, ld2)
    assert torch.equal(z1[:, 1:], expected)   # zero-initialised conditioner: e' = e


class _Correlate(Bijector):
    """``[x, e'] -> [x, (e' - rho x) / s]``, ``s = sqrt(1 - rho^2)``: with a standard normal base,
    ``(x, e')`` is bivariate normal with unit variances and correlation ``rho``, so the marginal
    of ``x`` is exactly ``N(0, 1)`` and ``p(e' | x) = N(rho x, s^2)``."""

    def __init__(self, rho):
        super().__init__()
        self.rho, self.s = rho, math.sqrt(1 - rho ** 2)

    def forward(self, x, cond=None):
        z = torch.cat([x[:, :1], (x[:, 1:] - self.rho * x[:, :1]) / self.s], dim=1)
        return z, x.new_full((x.shape[0],), -math.log(self.s))

    def inverse(self, z, cond=None):
        x = torch.cat([z[:, :1], z[:, 1:] * self.s + self.rho * z[:, :1]], dim=1)
        return x, z.new_full((z.shape[0],), math.log(self.s))


class _AffineNet(nn.Module):
    """``(mu, h)`` affine in ``x`` (a 1x1 convolution): can represent the true posterior."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 2, 1)

    def forward(self, x, cond=None):
        return self.conv(x)


def _gaussian_problem(rho=0.8):
    aug = CrossUnitAugment(1, 1, conditioner=_AffineNet())
    return aug, Sequential(aug, _Correlate(rho)), Normal()


def _bound(flow, base, x, e):
    z, logdet = flow[0](x, noise=e)
    z, ld = flow[1](z)
    return base.log_prob(z) + logdet + ld


def test_bound_matches_analytic_elbo_and_lies_below_exact_log_likelihood():
    rho = 0.8
    aug, flow, base = _gaussian_problem(rho)
    with torch.no_grad():
        aug.net.conv.weight.copy_(torch.tensor([[[0.3]], [[0.4]]]))
        aug.net.conv.bias.copy_(torch.tensor([0.2, -0.5]))
    xs = torch.tensor([-1.5, 0.0, 0.7, 2.0])
    n = 40000
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for x0 in xs:
            x = x0.expand(n).reshape(n, 1, 1)
            e = torch.randn(n, 1, 1, generator=g)
            b = _bound(flow, base, x, e)
            exact = -0.5 * x0 ** 2 - 0.5 * math.log(2 * math.pi)      # log N(x; 0, 1)
            # ELBO = log p(x) - KL(q || p(e' | x)), both Gaussians
            mq = 0.3 * x0 + 0.2
            sq = torch.exp(5.0 * torch.tanh((0.4 * x0 - 0.5) / 5.0))
            mp, sp = rho * x0, math.sqrt(1 - rho ** 2)
            kl = math.log(sp) - torch.log(sq) + (sq ** 2 + (mq - mp) ** 2) / (2 * sp ** 2) - 0.5
            analytic = exact - kl
            stderr = b.std() / math.sqrt(n)
            assert abs(b.mean() - analytic) < 4 * stderr, (float(x0), float(b.mean()), float(analytic))
            assert kl > 0.05 and b.mean() < exact


def test_bound_is_exact_at_the_true_posterior_and_training_reaches_it():
    rho = 0.8
    aug, flow, base = _gaussian_problem(rho)
    s = math.sqrt(1 - rho ** 2)
    with torch.no_grad():   # q(e' | x) = N(rho x, s^2), the model's own conditional
        aug.net.conv.weight.copy_(torch.tensor([[[rho]], [[0.0]]]))
        aug.net.conv.bias.copy_(torch.tensor([0.0, 5.0 * math.atanh(math.log(s) / 5.0)]))
    x = torch.randn(200, 1, 1)
    with torch.no_grad():
        b = _bound(flow, base, x, torch.randn(200, 1, 1))
    exact = -0.5 * x.flatten() ** 2 - 0.5 * math.log(2 * math.pi)
    assert torch.allclose(b, exact, atol=1e-12)          # every noise draw: zero variance

    # from the zero initialisation, maximising the bound fits the posterior: the gap closes
    aug, flow, base = _gaussian_problem(rho)
    torch.manual_seed(0)
    opt = torch.optim.Adam(aug.parameters(), lr=0.1)
    x = torch.randn(128, 1, 1)
    exact = -0.5 * x.flatten() ** 2 - 0.5 * math.log(2 * math.pi)
    with torch.no_grad():
        gap0 = float((exact - _bound(flow, base, x, torch.randn(128, 1, 1))).mean())
    for _ in range(120):
        loss = -_bound(flow, base, x, torch.randn(128, 1, 1)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        gap = float((exact - _bound(flow, base, x, torch.randn(128, 1, 1))).mean())
    assert gap0 > 0.3 and 0 <= gap < 0.01, (gap0, gap)
    assert aug.net.conv.weight[0].item() == pytest.approx(rho, abs=0.05)


@pytest.mark.parametrize("kwargs", [{"aug_channels": 0}, {"aug_channels": -2}, {"aug_channels": 1.5},
                                    {"channels": 0}, {"max_log_sigma": 0.0}])
def test_bad_layer_configs_raise(kwargs):
    args = {"channels": 2, "aug_channels": 2, **kwargs}
    with pytest.raises(ValueError, match="CrossUnitAugment"):
        CrossUnitAugment(args.pop("channels"), args.pop("aug_channels"), **args)


def test_bad_inputs_raise():
    aug = CrossUnitAugment(2, 3, ndim=1, hidden=4)
    with pytest.raises(ValueError, match="expects 2 channels"):
        aug(torch.randn(1, 3, 4))
    with pytest.raises(ValueError, match="noise must have shape"):
        aug(torch.randn(1, 2, 4), noise=torch.randn(1, 2, 4))
    with pytest.raises(ValueError, match="expects 5 channels"):
        aug.inverse(torch.randn(1, 4, 4))
    bad = CrossUnitAugment(2, 3, conditioner=ConvNet(2, 5, ndim=1))
    with pytest.raises(ValueError, match="conditioner produced"):
        bad(torch.randn(1, 2, 4))


# -- the image model ---------------------------------------------------------------------------

CFG = {"type": "denseflow", "levels": 2, "steps": 1, "hidden": 8, "augment": [2, 4], "aug_hidden": 4}


def _model(seed=0):
    torch.manual_seed(seed)
    model = build_image_flow(CFG, (1, 8, 8)).double()
    randomize(model, std=0.05, seed=seed)
    return model.eval()


def test_denseflow_is_registered_and_its_latent_is_augmented():
    assert "denseflow" in IMAGE_MODELS and IMAGE_MODELS.get("denseflow").cls is denseflow
    model = _model()
    assert model.augmented and model.latent_shape == (7, 4, 4)   # 4 + 2 + 4/4 channels
    assert not build_image_flow({"type": "glow", "levels": 2, "steps": 1, "hidden": 8}, (1, 8, 8)).augmented
    x = torch.randint(0, 256, (3, 1, 8, 8))
    z, _ = model(x, noise=torch.rand(3, 1, 8, 8))
    assert z.shape == (3, 7, 4, 4)
    # the augmented dimensions are dropped exactly on the way back
    xc = x.double() + 0.5
    z, _ = model.bijector(xc)
    assert torch.allclose(model.bijector.inverse(z)[0], xc, atol=1e-9)
    assert torch.equal(model.decode(model.encode(x)), x.to(torch.uint8))


def test_denseflow_samples_drop_the_noise_channels():
    model = _model()
    imgs = model.sample_images(5, temperature=0.7, generator=torch.Generator().manual_seed(0))
    assert imgs.shape == (5, 1, 8, 8) and imgs.dtype == torch.uint8


def test_bits_per_dim_is_the_negative_elbo_and_importance_weighting_tightens_it():
    model = _model()
    x = torch.randint(0, 256, (4, 1, 8, 8))
    u = torch.rand(4, 1, 8, 8)
    d = 64 * math.log(2.0)
    torch.manual_seed(3)
    singles = torch.stack([model.bits_per_dim(x, u) for _ in range(6)])
    torch.manual_seed(3)
    iw = model.bits_per_dim(x, u, samples=6)
    # the same six draws: -log mean exp(ELBO_k), computed here from the single-draw values
    ref = -(torch.logsumexp(-singles * d, 0) - math.log(6)) / d
    assert torch.allclose(iw, ref, atol=1e-10)
    assert (iw <= singles.mean(0) + 1e-12).all()
    assert (singles.std(0) > 0).all()    # the bound depends on the noise draw
    with pytest.raises(ValueError, match="samples"):
        model.bits_per_dim(x, u, samples=0)
    with pytest.raises(ValueError, match="augmented"):
        build_image_flow({"type": "glow", "levels": 2, "steps": 1, "hidden": 8}, (1, 8, 8)).bits_per_dim(
            x, u, samples=2)


def test_evaluate_bpd_is_reproducible_for_augmented_models_and_leaves_the_rng_alone():
    model = _model()
    images = torch.randint(0, 256, (6, 1, 8, 8), dtype=torch.uint8)
    torch.manual_seed(11)
    r1 = evaluate_bpd(model, images, batch_size=4, seed=5)
    after = torch.rand(1)
    torch.manual_seed(11)
    r2 = evaluate_bpd(model, images, batch_size=4, seed=5)
    assert torch.equal(torch.rand(1), after)      # caller's generator state restored
    r3 = evaluate_bpd(model, images, batch_size=4, seed=6)
    assert r1 == r2 and r1["augmented"] is True and r1["n"] == 6 and r3["bpd"] != r1["bpd"]


@pytest.mark.parametrize("cfg,match", [
    ({"augment": [4, 0]}, "positive integers"),
    ({"augment": 0}, "positive integers"),
    ({"augment": [4]}, "one channel count per level"),
    ({"augment": [4, 6]}, "divisible by 4"),
    ({"levels": 0}, "levels"),
    ({"coupling": "spline"}, "coupling"),
])
def test_bad_denseflow_configs_raise(cfg, match):
    with pytest.raises(ValueError, match=match):
        build_image_flow({**CFG, **cfg}, (1, 8, 8))


def test_train_evaluate_sample_cli_end_to_end(tmp_path, capsys):
    import json

    import yaml

    from vocoflow.cli.main import main
    from vocoflow.images import load_image_flow
    from vocoflow.images.png import read_png_size

    torch.set_default_dtype(torch.float32)   # the CLI trains in float32
    data, exp = tmp_path / "data", tmp_path / "exp"
    assert main(["prepare-image-data", "--dataset", "digits", "--out-dir", str(data)]) == 0
    cfg = {"model": {**CFG, "levels": 2}, "data": {"validate_items": 16, "eval_batch_size": 32},
           "train": {"steps": 2, "batch_size": 8, "lr": 1e-3, "checkpoint_every": 2, "validate_every": 2,
                     "log_every": 1},
           "sample": {"temperatures": [0.7]}}
    (tmp_path / "df.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train-image", "--config", str(tmp_path / "df.yaml"), "--data-dir", str(data),
                 "--out-dir", str(exp), "--cpu", "--no-progress"]) == 0
    model = load_image_flow(exp / "model")
    assert model.augmented and model.latent_shape == (7, 4, 4)
    results = []
    for _ in range(2):
        capsys.readouterr()
        assert main(["evaluate-image", "--model-dir", str(exp / "model"), "--data-dir", str(data),
                     "--out", str(exp / "eval.json"), "--cpu", "--no-progress", "--limit", "40"]) == 0
        res = json.loads((exp / "eval.json").read_text())
        res.pop("seconds")
        results.append(res)
    assert results[0] == results[1]    # the augmentation noise is seeded: reproducible bound
    assert results[0]["augmented"] is True and results[0]["finite"] and 0 < results[0]["bpd"] < 16
    assert main(["sample-image", "--model-dir", str(exp / "model"), "--out-dir", str(exp / "s"),
                 "--temperatures", "0.7", "--n", "4", "--nrow", "2", "--data-dir", str(data),
                 "--interp-pairs", "1", "--interp-steps", "2", "--cpu"]) == 0
    assert read_png_size(exp / "s" / "samples_T0.7.png") == (22, 22)
    assert read_png_size(exp / "s" / "interpolation.png") == (2 + 4 * 10, 2 + 10)
