"""WaveNet teachers: cached sampler == naive sampler, the likelihood and its flow view, causality,
maximum-likelihood training by teacher forcing, save/load."""

from __future__ import annotations

import math

import pytest
import torch

from flowcheck import randomize
from vocoflow.vocoders import WaveNetTeacher, WaveNetTeacherConfig, load, save_vocoder

D = torch.float64


def _teacher(output="gaussian", kernel=2, seed=0, **kw):
    torch.manual_seed(seed)
    m = WaveNetTeacher(n_mels=4, hop_length=8, n_layers=5, dilation_cycle=3, channels=6,
                       kernel_size=kernel, output=output, mix_components=3, **kw).to(D)
    return randomize(m, std=0.3, seed=seed)


@pytest.mark.parametrize("output", ["gaussian", "mixlogistic"])
@pytest.mark.parametrize("kernel", [2, 3])
def test_cached_sampler_equals_naive_recompute(output, kernel):
    m = _teacher(output, kernel)
    mel, noise = torch.randn(2, 4, 7, dtype=D), torch.randn(2, 56, dtype=D)
    for sigma in (1.0, 0.5):
        cached = m.sample(mel, sigma=sigma, noise=noise, method="cached")
        naive = m.sample(mel, sigma=sigma, noise=noise, method="naive")
        assert cached.shape == (2, 56)
        assert torch.allclose(cached, naive, atol=1e-10, rtol=0), (cached - naive).abs().max()


def test_cached_sampler_crosses_blocks_and_matches_teacher_forcing():
    m = _teacher("gaussian", 2)
    mel, noise = torch.randn(1, 4, 5, dtype=D), torch.randn(1, 40, dtype=D)
    x = m._sample_cached(m.condition(mel), noise, 1.0, block=7)
    # teacher forcing on the sample reproduces the noise that drove it
    mu, ls = m.gaussian_params(x, mel)
    assert torch.allclose((x - mu) * torch.exp(-ls), noise, atol=1e-10)
    assert torch.allclose(x, m.sample(mel, noise=noise), atol=1e-12)


def test_sampler_cost_does_not_grow_with_the_receptive_field():
    # the queues hold (kernel - 1) * dilation past inputs per layer: the work per sample is a
    # fixed number of small matrix products per layer, whatever the receptive field
    m = WaveNetTeacher(n_mels=2, hop_length=4, n_layers=12, dilation_cycle=12, channels=4)
    assert m.receptive_field == 4096
    calls = []
    orig = torch.addmm

    def counting(*a, **k):
        calls.append(1)
        return orig(*a, **k)

    torch.addmm = counting
    try:
        m.sample(torch.randn(1, 2, 2))
    finally:
        torch.addmm = orig
    per_sample = len(calls) / 8
    assert per_sample <= 2 * 12 + 2


@pytest.mark.parametrize("output", ["gaussian", "mixlogistic"])
def test_likelihood_is_causal_and_normalised(output):
    m = _teacher(output, 3)
    mel = torch.randn(1, 4, 2, dtype=D)
    x = 0.3 * torch.randn(1, 16, dtype=D)
    step = m.step_log_prob(x, mel)
    x2 = x.clone()
    x2[0, 9] += 0.1
    step2 = m.step_log_prob(x2, mel)
    assert torch.equal(step[0, :9], step2[0, :9]) and not torch.equal(step[0, 10:], step2[0, 10:])
    # the flow view gives the same likelihood
    z, logdet = m(x, mel)
    assert torch.allclose(m.base.log_prob(z) + logdet, m.log_prob(x, mel), atol=1e-10)
    # the first step's conditional (given the mel only) integrates to one
    p = m.params(x, mel)
    if output == "gaussian":
        lo, hi = p[0][0, 0] - 12 * p[1][0, 0].exp(), p[0][0, 0] + 12 * p[1][0, 0].exp()
    else:
        lo = (p[1][0, :, 0] - 40 * p[2][0, :, 0].exp()).min()
        hi = (p[1][0, :, 0] + 40 * p[2][0, :, 0].exp()).max()
    grid = torch.linspace(lo.item(), hi.item(), 4001, dtype=D)
    xs = torch.zeros(grid.numel(), 16, dtype=D)
    xs[:, 0] = grid
    dens = torch.exp(m.step_log_prob(xs, mel.expand(grid.numel(), -1, -1))[:, 0])
    assert abs(torch.trapezoid(dens, grid).item() - 1) < 1e-4


def test_temperature_scales_the_gaussian():
    m = _teacher("gaussian")
    mel, x = torch.randn(1, 4, 2, dtype=D), torch.randn(1, 16, dtype=D)
    mu1, ls1 = m.gaussian_params(x, mel)
    mu2, ls2 = m.gaussian_params(x, mel, sigma=0.6)
    assert torch.equal(mu1, mu2) and torch.allclose(ls2, ls1 + math.log(0.6))
    with pytest.raises(ValueError):
        _teacher("mixlogistic").gaussian_params(x, mel)


def test_teacher_forcing_fits_a_toy_signal():
    torch.manual_seed(0)
    m = WaveNetTeacher(n_mels=2, hop_length=16, n_layers=4, dilation_cycle=4, channels=16,
                       upsample="repeat")
    t = torch.arange(256.0)
    audio = 0.3 * torch.sin(2 * math.pi * t / 16)[None] + 0.01 * torch.randn(4, 256)
    mel = torch.zeros(4, 2, 16)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)  # 3e-3 spikes late in the run
    first = None
    for _ in range(150):
        nll = m.nll(audio, mel)
        first = first if first is not None else nll.item()
        opt.zero_grad()
        nll.backward()
        opt.step()
    assert first > 0.5 and nll.item() < -2.0, (first, nll.item())


def test_config_and_save_load(tmp_path):
    cfg = WaveNetTeacherConfig(output="mixlogistic", mix_components=5)
    assert WaveNetTeacherConfig.from_dict(cfg.to_dict()) == cfg and cfg.n_out == 15
    for bad in ({"output": "softmax"}, {"n_layers": 0}, {"upsample": "linear"}):
        with pytest.raises(ValueError):
            WaveNetTeacherConfig(**bad)
    conf = {"features": {"preset": "asterisk16k", "n_mels": 8},
            "model": {"type": "wavenet_teacher", "n_layers": 3, "channels": 4,
                      "upsample": "repeat"}}
    torch.manual_seed(0)
    m = randomize(WaveNetTeacher(n_mels=8, hop_length=256, n_layers=3, channels=4,
                                 upsample="repeat"), std=0.05)
    d = save_vocoder(m, conf, tmp_path / "teacher")
    voc = load(d)
    mel, noise = torch.randn(8, 2), torch.randn(1, 512)
    wav = voc.synthesize(mel, sigma=1.0, noise=noise, check=False)
    with torch.no_grad():
        ref = m.remove_weight_norm().sample(mel[None], noise=noise)
    assert torch.allclose(wav, ref[0], atol=1e-5)
