"""IAF students: exact inversion and log-determinants, causality, one conditioner call per flow,
the affine per-step statistics, save/load/synthesis like any vocoder."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from flowcheck import jacobian_logdet, randomize
from vocoflow.flows import IAF, AffineMap, ChainMap, MixLogisticMap
from vocoflow.nets import WN, BlockedWN
from vocoflow.vocoders import (
    IAFStudent,
    StudentConfig,
    build_model,
    chunked_infer,
    load,
    load_config,
    save_vocoder,
)

D = torch.float64


def _student(map="affine", noise="gaussian", layers=(2, 3), n_mels=3, hop=4, seed=0, **kw):
    torch.manual_seed(seed)
    s = IAFStudent(n_mels=n_mels, hop_length=hop, flow_layers=list(layers), channels=6,
                   dilation_cycle=2, map=map, noise=noise, mix_components=2, **kw).to(D)
    for f in s.flows:  # move the zero-initialised output layers away from the identity
        torch.nn.init.normal_(f.net.end.weight, std=0.2, generator=torch.Generator().manual_seed(seed))
    return s


def _wn_factory(layers=3):
    def make(i, o, c):
        return WN(i, o, c, n_layers=layers, n_channels=6, kernel_size=3, causal=True,
                  dilation_cycle=2)
    return make


@pytest.mark.parametrize("law", ["mixlogistic", "chain"])
def test_non_affine_iaf_step_inverts_exactly_and_logdet_matches_jacobian(law):
    mp = MixLogisticMap(3) if law == "mixlogistic" else ChainMap([MixLogisticMap(3), AffineMap()])
    step = randomize(IAF(1, map=mp, conditioner=_wn_factory(), cond_channels=2).to(D), std=0.3)
    z = torch.randn(3, 1, 20, dtype=D)
    c = torch.randn(3, 2, 20, dtype=D)
    x, ld = step.inverse(z, c)                              # sampling: one parallel pass
    z2, ld2 = step(x, c)                                    # sequential inversion
    assert (z2 - z).abs().max() < 1e-9
    assert torch.allclose(ld, -ld2, atol=1e-9)
    ref = jacobian_logdet(lambda v: step.inverse(v, c)[0], z)
    assert torch.allclose(ld, ref, atol=1e-7), (ld, ref)


@pytest.mark.parametrize("map,noise", [("affine", "gaussian"), ("mixlogistic", "logistic"),
                                       (["mixlogistic", "affine"], "gaussian"),
                                       ("additive", "logistic")])
def test_student_density_is_exact(map, noise):
    s = _student(map, noise)
    mel, n = torch.randn(2, 3, 5, dtype=D), torch.randn(2, 20, dtype=D)
    out = s(n, mel)
    x = out["audio"]
    assert torch.equal(s.infer(mel, noise=n), x)
    # per-step log-det = log|dx/dz| from the full Jacobian (noise -> base transform removed)
    z = out["z"]
    ref = jacobian_logdet(lambda v: _from_base(s, v, mel), z)
    assert torch.allclose(out["logdet"].sum(-1), ref, atol=1e-7)
    # log q from the sampling pass equals log q by sequential inversion of the audio
    assert torch.allclose(out["log_q"].sum(-1), s.log_prob(x, mel), atol=1e-8)
    assert torch.allclose(s(None, mel, data=x)["log_prob"], s.log_prob(x, mel))


def _from_base(s, z, mel):
    cond = s.condition(mel)
    x = z[:, None]
    for f in s.flows:
        x, _ = f.inverse(x, cond)
    return x[:, 0]


def test_affine_stack_is_one_affine_map_per_step():
    s = _student("affine", "gaussian", layers=(2, 2, 3))
    mel, n = torch.randn(2, 3, 6, dtype=D), torch.randn(2, 24, dtype=D)
    out = s(n, mel, sigma=0.7)
    e = n  # gaussian: the standard base noise is the unit normal noise
    assert torch.allclose(out["mu"] + torch.exp(out["log_scale"]) * e, out["audio"], atol=1e-12)
    # mu_t and s_t depend on the past noise only: changing e_t moves x_t linearly
    n2 = n.clone()
    n2[:, 10] += 1.0
    out2 = s(n2, mel, sigma=0.7)
    assert torch.allclose(out2["mu"][:, :11], out["mu"][:, :11])
    assert torch.allclose(out2["log_scale"][:, :11], out["log_scale"][:, :11])
    assert not torch.allclose(out2["mu"][:, 11:], out["mu"][:, 11:])


@pytest.mark.parametrize("map", ["affine", "mixlogistic"])
def test_sampling_is_causal_in_the_noise(map):
    s = _student(map, "logistic", layers=(3, 3))
    mel = torch.randn(1, 3, 10, dtype=D)
    n = torch.randn(1, 40, dtype=D)
    x = s.infer(mel, noise=n)
    for t0 in (0, 17, 39):
        n2 = n.clone()
        n2[0, t0] += 0.5
        x2 = s.infer(mel, noise=n2)
        assert torch.equal(x2[0, :t0], x[0, :t0]), t0
        assert (x2[0, t0] - x[0, t0]).abs() > 1e-6


def test_sampling_is_one_conditioner_call_per_flow():
    s = IAFStudent(n_mels=4, hop_length=8, flow_layers=[2, 2, 3], channels=8, map="mixlogistic")
    calls = []
    for f in s.flows:
        f.net.register_forward_hook(lambda *a: calls.append(1))
    for frames in (2, 50):
        calls.clear()
        with torch.inference_mode():
            s.infer(torch.randn(2, 4, frames))
        assert len(calls) == 3, (frames, len(calls))
        calls.clear()
        s(torch.randn(2, frames * 8), torch.randn(2, 4, frames))  # training pass too
        assert len(calls) == 3


def test_logistic_noise_transform():
    s = IAFStudent(n_mels=2, hop_length=4, flow_layers=[1], channels=4, noise="logistic")
    n = torch.randn(200_000, generator=torch.Generator().manual_seed(0), dtype=D)
    z = s.base_noise(n)
    # standard logistic: variance pi^2 / 3, CDF sigmoid
    assert abs(z.var().item() - math.pi ** 2 / 3) < 0.05
    assert abs((z < 1.0).double().mean().item() - torch.sigmoid(torch.tensor(1.0)).item()) < 0.005
    assert torch.isfinite(s.base_noise(torch.tensor([-30.0, 30.0]))).all()


def test_init_scale():
    for mp in ("affine", "mixlogistic", ["mixlogistic", "affine"]):
        s = IAFStudent(n_mels=2, hop_length=4, flow_layers=[1, 2], channels=4, map=mp,
                       init_scale=0.05).double()
        n = torch.randn(2, 16, dtype=D)
        x = s.infer(torch.randn(2, 2, 4, dtype=D), noise=n)
        assert torch.allclose(x, 0.05 * n, atol=1e-10), mp
    with pytest.raises(ValueError):
        IAFStudent(n_mels=2, hop_length=4, flow_layers=[1], map="additive", init_scale=0.1)


def test_config_validation_and_round_trip():
    cfg = StudentConfig(flow_layers=[1, 2], map=["mixlogistic", "affine"], noise="logistic")
    assert StudentConfig.from_dict(cfg.to_dict()) == cfg
    assert not cfg.affine and StudentConfig(map="additive").affine
    for bad in ({"map": "spline"}, {"noise": "uniform"}, {"flow_layers": []},
                {"flow_layers": [0]}, {"init_scale": 0}):
        with pytest.raises(ValueError):
            StudentConfig(**bad)
    with pytest.raises(ValueError):
        StudentConfig.from_dict({"type": "waveglow"})
    d = StudentConfig().to_dict()
    assert d["flow_layers"] == [10, 10, 10, 30] and d["channels"] == 64


def test_default_student_layout():
    s = IAFStudent()
    assert [f.net.n_layers for f in s.flows] == [10, 10, 10, 30]
    assert s.flows[3].net.dilations[:11] == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1]
    assert s.receptive_field == 1 + 3 * 2047 + 6139  # x_t depends on z_{t-12280..t}
    assert 2.4e6 < s.macs_per_sample() < 2.8e6


def test_save_load_decode_like_any_vocoder(tmp_path):
    cfg = load_config("configs/distill_debug.yaml")
    torch.manual_seed(0)
    model = randomize(build_model(cfg), std=0.05)
    stats = {"mean": np.full(80, -6.0), "scale": np.full(80, 2.0)}
    d = save_vocoder(model, cfg, tmp_path / "voc", stats=stats)
    voc = load(d)
    assert isinstance(voc.model, IAFStudent) and voc.synthesis_defaults["sigma"] == 1.0
    mel = torch.full((80, 7), -6.0) + torch.randn(80, 7)
    noise = torch.randn(1, 7 * 256)
    wav = voc.synthesize(mel, noise=noise)
    assert wav.shape == (7 * 256,) and torch.isfinite(wav).all()
    # the same as the in-memory model on normalised input
    with torch.no_grad():
        ref = model.remove_weight_norm().infer((mel[None] + 6.0) / 2.0, noise=noise)
    assert torch.allclose(wav, ref[0], atol=1e-5)


def test_chunked_synthesis_equals_whole():
    torch.manual_seed(0)
    s = randomize(IAFStudent(n_mels=4, hop_length=8, flow_layers=[2, 3], channels=8,
                             dilation_cycle=2, upsample="transpose"), std=0.05).eval()
    mel, noise = torch.randn(1, 4, 40), torch.randn(1, 320)
    with torch.inference_mode():
        whole = s.infer(mel, noise=noise)
        parts = chunked_infer(s, mel, 1.0, noise, chunk_frames=7)
    assert torch.allclose(whole, parts, atol=1e-5)


@pytest.mark.parametrize("kernel,cond", [(2, 0), (3, 5)])
def test_blocked_gemm_inference_path_equals_the_convolution_path(kernel, cond):
    net = randomize(BlockedWN(2, 4, cond, n_layers=7, n_channels=6, kernel_size=kernel,
                              causal=True, dilation_cycle=4).to(D), std=0.3)
    x = torch.randn(2, 2, 100, dtype=D)
    c = torch.randn(2, cond, 100, dtype=D) if cond else None
    ref = net(x, c).detach()          # autograd on: the convolution path
    for block in (1, 3, 7, 64, 1000):  # blocks shorter and longer than the dilations
        net.block = block
        with torch.inference_mode():
            assert torch.allclose(net(x, c), ref, atol=1e-12, rtol=0), block
