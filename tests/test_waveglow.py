"""WaveGlow: exact inversion, log-determinants against autograd Jacobians, configs, sizes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from flowcheck import jacobian_logdet, randomize
from vocoflow.flows import Sequential, Split, Squeeze
from vocoflow.vocoders import WaveGlow, WaveGlowConfig, build_model, load_config

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def tiny(coupling="affine", lu=False, seed=0, **kw):
    torch.manual_seed(seed)
    cfg = dict(n_mels=4, hop_length=8, n_group=4, n_flows=3, n_early_every=1, n_early_size=1,
               wn_layers=2, wn_channels=8, coupling=coupling, lu=lu, upsample_kernel=16,
               residual_hidden=8, residual_layers=2, residual_logdet="exact",
               mix_components=2)
    cfg.update(kw)
    model = WaveGlow(**cfg).double()
    std = 0.05 if coupling == "residual" else 0.2
    return randomize(model, std=std, seed=seed)


def _data(model, batch=2, frames=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    hop = model.config.hop_length
    audio = torch.randn(batch, frames * hop, generator=g, dtype=torch.float64) * 0.5
    mel = torch.randn(batch, model.config.n_mels, frames, generator=g, dtype=torch.float64)
    return audio, mel


@pytest.mark.parametrize("coupling,lu", [("affine", False), ("affine", True), ("additive", False),
                                         ("mixlogistic", False), ("residual", False)])
def test_float64_inverts_exactly(coupling, lu):
    model = tiny(coupling, lu).eval()
    audio, mel = _data(model, frames=2)
    with torch.no_grad():
        z, logdet = model(audio, mel)
        back = model.infer(mel, sigma=1.0, noise=z)
        _, inv_logdet = model.bijector.inverse(z, model.condition(mel))
    tol = 1e-9
    assert (back - audio).abs().max().item() < tol
    assert torch.allclose(inv_logdet, -logdet, atol=1e-8)
    assert z.shape == (2, 4, 4)


@pytest.mark.parametrize("coupling", ["affine", "additive", "mixlogistic", "residual"])
def test_logdet_matches_autograd_jacobian(coupling):
    model = tiny(coupling).eval()  # eval: no spectral-norm power iterations between calls
    audio, mel = _data(model, frames=2)  # 16 samples: a 16 x 16 Jacobian per item
    _, logdet = model(audio, mel)
    ref = jacobian_logdet(lambda a: model(a, mel)[0], audio)
    assert torch.allclose(logdet, ref, atol=1e-7), (logdet, ref)
    if coupling == "additive":  # volume preserving couplings: only the 1x1 convs count
        assert not torch.allclose(logdet, torch.zeros_like(logdet))


def test_float32_round_trip_debug_config():
    cfg = load_config(CONFIGS / "waveglow_debug.yaml")
    torch.manual_seed(0)
    model = randomize(build_model(cfg), std=0.05).eval()
    g = torch.Generator().manual_seed(0)
    audio = torch.randn(2, 8 * 256, generator=g) * 0.3
    mel = torch.randn(2, 80, 8, generator=g) - 5
    with torch.inference_mode():
        z, _ = model(audio, mel)
        back = model.infer(mel, sigma=1.0, noise=z)
    assert (back - audio).abs().max().item() < 1e-4


def test_model_is_one_bijector_with_early_outputs():
    model = WaveGlow(n_mels=4, hop_length=8, n_group=8, n_flows=12, n_early_every=4,
                     n_early_size=2, wn_layers=1, wn_channels=4)
    bij = model.bijector
    assert isinstance(bij, Sequential) and isinstance(bij[0], Squeeze)
    splits = [m for m in bij.modules() if isinstance(m, Split)]
    assert len(splits) == 2 and all(s.n_early == 2 for s in splits)
    assert model.config.flow_channels() == [8] * 4 + [6] * 4 + [4] * 4
    # early channels pass through the rest of the flows unchanged
    audio, mel = torch.randn(1, 64), torch.randn(1, 4, 8)
    with torch.no_grad():
        z, _ = model(audio, mel)
    with torch.no_grad():
        for p in splits[0].inner.parameters():
            p.add_(1.0)
        z2, _ = model(audio, mel)
    assert torch.equal(z[:, :2], z2[:, :2]) and not torch.equal(z[:, 2:], z2[:, 2:])


def test_nll_and_training_gradients():
    model = tiny("affine").float()
    audio, mel = (t.float() for t in _data(model))
    nll = model.nll(audio, mel, sigma=1.0)
    assert nll.dim() == 0 and torch.isfinite(nll)
    nll.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    lp = model.log_prob(audio, mel, sigma=0.5)
    assert lp.shape == (2,)
    assert torch.allclose(nll, -model.log_prob(audio, mel, 1.0).mean() / audio.shape[1])


def test_infer_noise_layouts_and_generator():
    model = tiny().float()
    _, mel = _data(model, frames=3)
    mel = mel.float()
    noise = torch.randn(2, 24)
    with torch.no_grad():
        a = model.infer(mel, sigma=0.6, noise=noise)
        b = model.infer(mel, sigma=0.6, noise=Squeeze(4)(noise[:, None])[0])
        c1 = model.infer(mel, generator=torch.Generator().manual_seed(3))
        c2 = model.infer(mel, generator=torch.Generator().manual_seed(3))
    assert a.shape == (2, 24) and torch.equal(a, b) and torch.equal(c1, c2)
    with pytest.raises(ValueError, match="noise must have shape"):
        model.infer(mel, noise=torch.randn(2, 23))


def test_length_mismatch_is_an_error():
    model = tiny()
    with pytest.raises(ValueError, match="does not match"):
        model(torch.randn(1, 17, dtype=torch.float64), torch.randn(1, 4, 2, dtype=torch.float64))


def test_nvidia_config_size_and_cost():
    cfg = load_config(CONFIGS / "waveglow_nvidia.yaml")
    model = build_model(cfg)
    assert abs(model.n_params() / 87.9e6 - 1) < 0.02, model.n_params()
    gmacs_per_second = model.macs_per_sample() * 22050 / 1e9
    assert abs(gmacs_per_second / 229 - 1) < 0.05, gmacs_per_second
    c = model.config
    assert (c.n_mels, c.hop_length, c.n_group, c.n_flows, c.n_early_every, c.n_early_size,
            c.wn_layers, c.wn_channels, c.wn_kernel_size) == (80, 256, 8, 12, 4, 2, 8, 256, 3)
    assert cfg["train"]["sigma"] == 1.0 and cfg["synthesis"]["sigma"] == 0.6
    assert model.context_frames == 98


@pytest.mark.parametrize("name", ["nvidia", "small", "debug"])
def test_configs_have_the_shared_layout(name):
    import yaml

    raw = yaml.safe_load((CONFIGS / f"waveglow_{name}.yaml").read_text())
    assert list(raw) == ["features", "model", "train", "synthesis"]
    assert raw["model"]["type"] == "waveglow"
    assert set(raw["train"]) >= {"batch_size", "segment_length", "lr", "steps", "sigma",
                                 "grad_clip", "checkpoint_every", "validate_every", "log_every",
                                 "seed"}
    assert raw["synthesis"] == {"sigma": 0.6, "denoise": 0.0}
    cfg = load_config(CONFIGS / f"waveglow_{name}.yaml")
    hop = WaveGlowConfig.from_dict(cfg["model"], features=cfg["features"]).hop_length
    assert cfg["train"]["segment_length"] % hop == 0  # the trainer cuts whole frames


def test_config_validation():
    with pytest.raises(ValueError, match="multiple of n_group"):
        WaveGlowConfig(hop_length=100, n_group=8)
    with pytest.raises(ValueError, match="at least 2"):
        WaveGlowConfig(n_group=4, n_flows=8, n_early_every=2, n_early_size=1)
    with pytest.raises(ValueError, match="coupling"):
        WaveGlowConfig(coupling="spline")
    with pytest.raises(ValueError, match="disagrees"):
        WaveGlowConfig.from_dict({"n_mels": 40}, features={"n_mels": 80, "hop_length": 256})
    with pytest.raises(ValueError, match="unknown WaveGlowConfig"):
        WaveGlowConfig.from_dict({"n_flow": 3})
    with pytest.raises(ValueError, match="unknown top-level"):
        load_config({"features": {}, "model": {}, "optim": {}})
    assert WaveGlowConfig.from_dict({"type": "waveglow"}, features={"n_mels": 20,
                                                                     "hop_length": 128}).n_mels == 20
