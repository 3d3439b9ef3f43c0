"""The mel source (:class:`vocoflow.vocoders.source.MelSource`) and WaveGlow with ``source: mel``:
the synthesiser's calibration against independent computations, its determinism and chunking,
and the flow whose mean it is (exact inverse, exact log-density, identity at initialisation)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from flowcheck import jacobian_logdet, randomize
from vocoflow.audio import MelConfig
from vocoflow.audio.mel import MelSpectrogram
from vocoflow.vocoders import WaveGlow, WaveGlowConfig
from vocoflow.vocoders.source import MelSource
from vocoflow.vocoders.synthesis import chunked_infer

SR = 16000


def _fit_sinusoid(x: np.ndarray, freq: float, sr: int = SR) -> float:
    """Amplitude of the ``freq`` Hz component of ``x`` by least squares (sin and cos)."""
    t = np.arange(len(x)) / sr
    basis = np.stack([np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, x, rcond=None)
    return float(np.hypot(*coef))


@pytest.fixture(scope="module")
def fe():
    return MelSpectrogram("asterisk16k").double()


def test_envelope_of_a_flat_spectrum_is_flat(fe):
    src = MelSource(fe.config, refine=0)
    # the mel of a constant magnitude spectrum c: band m holds c * sum_f B[m, f]
    c = 0.37
    bands = c * fe.mel_basis.sum(dim=1)
    env = src.envelope(torch.log(bands)[None, :, None])[0, :, 0].numpy()
    hz = np.arange(env.shape[0]) * SR / 1024
    inner = (hz > 50) & (hz < 7900)  # bins covered by at least one filter
    assert np.allclose(env[inner], c, rtol=1e-6)  # float32-representable buffers


@pytest.mark.parametrize("freq,amp", [(200.0, 0.3), (137.0, 0.05)])
def test_harmonic_amplitude_is_calibrated(fe, freq, amp):
    """A sinusoid's mel, given its F0, comes back as a sinusoid of (nearly) the same amplitude:
    within 30 % from the envelope alone and within 3 % after the mel matching."""
    t = torch.arange(SR, dtype=torch.float64) / SR
    x = amp * torch.sin(2 * math.pi * freq * t)
    mel = fe(x)[None]
    f0 = torch.full((1, mel.shape[-1]), freq, dtype=torch.float64)
    mid = slice(4000, 12000)
    for refine, tol in ((0, 0.3), (8, 0.03)):
        y = MelSource(fe.config, refine=refine)(mel, f0)[0].numpy()
        est = _fit_sinusoid(y[mid], freq)
        assert abs(est / amp - 1) < tol, (refine, est, amp)
        # and nothing else is loud: the signal's power is (nearly) that of the sinusoid
        assert np.sqrt(np.mean(y[mid] ** 2)) < 1.1 * est / math.sqrt(2) + 1e-4


def test_mel_matching_brings_the_mel_close(fe):
    """On a voiced-then-unvoiced signal the source's mel approaches the target as refine grows."""
    g = torch.Generator().manual_seed(0)
    t = torch.arange(SR, dtype=torch.float64) / SR
    voiced = sum(0.2 / k * torch.sin(2 * math.pi * 180 * k * t) for k in range(1, 12))
    noise = 0.05 * torch.randn(SR, generator=g, dtype=torch.float64)
    x = torch.where(t < 0.5, voiced, noise)
    mel = fe(x)[None]
    frames = mel.shape[-1]
    f0 = torch.where(torch.arange(frames) < frames // 2 - 1, 180.0, 0.0).double()[None]
    errs = []
    for refine in (0, 2, 8):
        y = MelSource(fe.config, refine=refine)(mel, f0)
        errs.append(float((fe(y[0]) - mel[0])[:, 3:-3].abs().mean()))
    assert errs[0] > errs[1] > errs[2]
    assert errs[2] < 0.35  # nats of log-magnitude, averaged over bands and frames


def test_source_is_deterministic_and_float64_whatever_the_model_dtype(fe):
    src = MelSource(fe.config, refine=1)
    mel = torch.randn(2, 80, 12, dtype=torch.float64) - 4
    f0 = torch.tensor([[0.0] * 4 + [150.0] * 8, [120.0] * 12], dtype=torch.float64)
    a = src(mel, f0)
    src.float()
    assert src.spread.dtype == torch.float64 and src.mel.mel_basis.dtype == torch.float64
    b = src(mel.float(), f0.float())
    assert b.dtype == torch.float32
    assert torch.equal(a, src(mel, f0))
    assert (a.float() - b).abs().max() < 1e-4
    # the noise phase depends on nothing but the frame and bin: a batch row equals itself alone
    assert torch.allclose(src(mel[1:], f0[1:])[0], a[1], atol=1e-12)


def test_a_one_frame_mel_is_synthesised(fe):
    src = MelSource(fe.config, refine=2)
    for frames in (1, 2):
        y = src(torch.randn(1, 80, frames, dtype=torch.float64) - 4, torch.full((1, frames), 150.0))
        assert y.shape == (1, frames * 256) and torch.isfinite(y).all()


def test_normalised_features_are_un_normalised_with_the_stored_statistics(fe):
    src = MelSource(fe.config, refine=1)
    mel = torch.randn(1, 80, 10, dtype=torch.float64) - 4
    f0 = torch.full((1, 10), 140.0, dtype=torch.float64)
    mean, scale = torch.linspace(-5, -2, 80, dtype=torch.float64), torch.linspace(1, 2, 80, dtype=torch.float64)
    src.set_mel_statistics(mean.numpy(), scale.numpy())
    mean, scale = src.mel_mean, src.mel_scale  # stored float32-representable
    norm = (mel - mean[None, :, None]) / scale[None, :, None]
    assert torch.allclose(src(norm, f0, normalized=True), src(mel, f0), atol=1e-10)
    assert "mel_mean" in src.state_dict() and "spread" not in src.state_dict()


# ------------------------------------------------------------------ WaveGlow with source: mel
TINY_FE = dict(sample_rate=800, n_fft=32, hop_length=8, win_length=32, n_mels=4, fmin=0.0,
               fmax=400.0, log="ln")


def tiny(seed=0, randomized=True, **kw):
    torch.manual_seed(seed)
    cfg = dict(n_group=4, n_flows=3, n_early_every=1, n_early_size=1, wn_layers=2, wn_channels=8,
               upsample_kernel=16, excitation_harmonics=3, pitch_channels=8, pitch_layers=2,
               prior="mel", cond_proj=6, source="mel", source_refine=2, source_harmonics=8)
    cfg.update(kw)
    model = WaveGlow(WaveGlowConfig.from_dict(cfg, features=MelConfig.from_dict(TINY_FE))).double()
    return randomize(model, std=0.2, seed=seed) if randomized else model


def _data(frames=6, batch=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    audio = torch.randn(batch, frames * 8, generator=g, dtype=torch.float64) * 0.3
    mel = torch.randn(batch, 4, frames, generator=g, dtype=torch.float64) - 2
    f0 = torch.where(torch.rand(batch, frames, generator=g) > 0.3,
                     60 + 40 * torch.rand(batch, frames, generator=g), torch.zeros(batch, frames)).double()
    return audio, mel, f0


def test_config_fills_and_checks_the_source_features():
    cfg = WaveGlowConfig.from_dict({"source": "mel", "excitation_harmonics": 2, "n_group": 4, "n_early_every": 0,
                                    "hop_length": 8, "n_mels": 4}, features=MelConfig.from_dict(TINY_FE))
    assert cfg.source_features["n_fft"] == 32 and cfg.excitation_channels == 4
    assert WaveGlowConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="needs F0"):
        WaveGlowConfig.from_dict({"source": "mel", "n_group": 4, "n_early_every": 0, "hop_length": 8, "n_mels": 4},
                                 features=MelConfig.from_dict(TINY_FE))
    with pytest.raises(ValueError, match="source_features"):
        WaveGlowConfig(source="mel", excitation_harmonics=2)
    with pytest.raises(ValueError, match="disagree"):
        WaveGlowConfig(source="mel", excitation_harmonics=2, n_mels=4, hop_length=8, n_group=4, n_early_every=0,
                       sample_rate=800, source_features={**TINY_FE, "n_mels": 5})
    with pytest.raises(ValueError, match="source must be"):
        WaveGlowConfig(source="dsp")


def test_flow_with_source_inverts_and_its_density_is_the_residuals():
    model = tiny().eval()
    audio, mel, f0 = _data()
    with torch.no_grad():
        z, logdet = model(audio, mel, f0=f0)
        s = torch.exp(model.prior_log_scale(mel))
        back = model.infer(mel, sigma=1.0, noise=z / s, f0=f0)
        assert (back - audio).abs().max().item() < 1e-9
        # independent computation: the source alone, subtracted, then the bijector
        src = model.source(mel, f0, normalized=True)
        exc = torch.cat([model.excitation(f0), src[:, None]], dim=1)
        z2, ld2 = model.bijector((audio - src)[:, None], model.condition(mel, exc))
        assert torch.allclose(z, z2, atol=1e-12) and torch.allclose(logdet, ld2, atol=1e-12)
        scale = (0.7 * s).numpy()
        ref = (-0.5 * (z.numpy() / scale) ** 2 - np.log(scale)
               - 0.5 * math.log(2 * math.pi)).sum(axis=(1, 2)) + logdet.numpy()
        assert np.allclose(model.log_prob(audio, mel, sigma=0.7, f0=f0).numpy(), ref, atol=1e-9)
    # the translation has log-determinant 0: the Jacobian of audio -> z has logdet `logdet`
    ref_ld = jacobian_logdet(lambda a: model(a, mel, f0=f0)[0], audio)
    assert torch.allclose(logdet, ref_ld, atol=1e-7)
    # and the source matters: without it the latent differs
    assert (model.bijector(audio[:, None], model.condition(mel, exc))[0] - z).abs().max() > 1e-3


def test_untrained_flow_synthesises_its_source_at_temperature_zero():
    model = tiny(randomized=False).eval()  # WaveGlow's zero-initialised couplings: identity
    audio, mel, f0 = _data()
    with torch.no_grad():
        y = model.infer(mel, sigma=0.0, f0=f0)
        src = model.source(mel, f0, normalized=True)
    assert torch.allclose(y, src, atol=1e-12) and src.abs().max() > 0


def test_chunked_synthesis_equals_unchunked_with_the_source():
    model = tiny().eval()
    frames = 40
    _, mel, f0 = _data(frames=frames, batch=1, seed=4)
    noise = torch.randn(1, frames * 8, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    with torch.no_grad():
        whole = model.infer(mel, sigma=0.5, noise=noise, f0=f0)
        for chunk in (7, 16):
            assert (chunked_infer(model, mel, 0.5, noise, chunk, f0=f0) - whole).abs().max() < 1e-9
        # predicted F0
        a = model.infer(mel, sigma=0.5, noise=noise)
        assert (chunked_infer(model, mel, 0.5, noise, 9) - a).abs().max() < 1e-9


def test_training_forward_gives_gradients_and_a_sample_near_the_source():
    model = tiny().train()
    audio, mel, f0 = _data()
    out = model(audio, mel, f0=f0, sigma=1.0, sample_sigma=0.0, pitch_loss=True)
    (-out["log_prob"].mean() + out["sample"].pow(2).mean() + out["pitch_loss"]).backward()
    assert model.cond_proj.weight.grad.abs().sum() > 0
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
    assert not any(p.requires_grad for p in model.source.parameters())  # parameter-free


# ------------------------------------------------------- IAF students with excitation + source
def tiny_student(seed=0, **kw):
    from vocoflow.vocoders import IAFStudent, StudentConfig

    torch.manual_seed(seed)
    cfg = dict(flow_layers=[2, 3], channels=6, dilation_cycle=2, excitation_harmonics=3,
               pitch_channels=8, pitch_layers=2, source="mel", source_refine=2, source_harmonics=8)
    cfg.update(kw)
    s = IAFStudent(StudentConfig.from_dict(cfg, features=MelConfig.from_dict(TINY_FE))).double()
    return s


def test_student_with_excitation_and_source_has_an_exact_density():
    s = tiny_student()
    for f in s.flows:  # away from the identity
        torch.nn.init.normal_(f.net.end.weight, std=0.2, generator=torch.Generator().manual_seed(1))
    _, mel, f0 = _data(frames=5)
    n = torch.randn(2, 40, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out = s(n, mel, f0=f0, sigma=0.8)
        x = out["audio"]
        assert torch.allclose(s.infer(mel, sigma=0.8, noise=n, f0=f0), x, atol=1e-12)
        # log q by the sampling pass = log q by sequential inversion of the audio (minus source)
        assert torch.allclose(out["log_q"].sum(-1), s.log_prob(x, mel, sigma=0.8, f0=f0), atol=1e-8)
        # the affine stack's mu includes the source: x = mu + exp(log_scale) * e
        assert torch.allclose(out["mu"] + torch.exp(out["log_scale"]) * n, x, atol=1e-12)
        src = s.source(mel, f0, normalized=True)
        # the excitation reaches the flows: the residual depends on F0 beyond the source
        out2 = s(n, mel, f0=f0 * 1.3, sigma=0.8)
        src2 = s.source(mel, f0 * 1.3, normalized=True)
        assert ((out2["audio"] - src2) - (x - src)).abs().max() > 1e-4


def test_untrained_student_synthesises_its_source_and_chunks_join():
    s = tiny_student().eval()
    _, mel, f0 = _data(frames=30, batch=1, seed=6)
    noise = torch.randn(1, 240, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.allclose(s.infer(mel, sigma=0.0, f0=f0), s.source(mel, f0, normalized=True),
                              atol=1e-12)
        for f in s.flows:
            torch.nn.init.normal_(f.net.end.weight, std=0.1, generator=torch.Generator().manual_seed(4))
        whole = s.infer(mel, sigma=0.5, noise=noise)  # predicted F0
        assert (chunked_infer(s, mel, 0.5, noise, 8) - whole).abs().max() < 1e-9
    with pytest.raises(ValueError, match="needs F0"):
        tiny_student(excitation_harmonics=0)


# --------------------------------------------------------------------- the pitch pre-fit
def test_pitch_prefit_learns_the_tracked_f0_and_is_skipped_on_resume(tmp_path):
    from data_fixtures import make_tone_dumps
    from vocoflow.audio.pitch import PitchConfig
    from vocoflow.train.vocoder_task import VocoderTask

    dumps = make_tone_dumps(tmp_path, (("train", 3), ("dev", 2)), seconds=0.6, freq=150.0,
                            step=40.0, pitch=PitchConfig())
    cfg = {"features": {"preset": "asterisk16k"},
           "model": {"type": "waveglow", "n_group": 8, "n_flows": 2, "n_early_every": 0,
                     "wn_layers": 2, "wn_channels": 8, "upsample": "repeat",
                     "excitation_harmonics": 2, "pitch_channels": 16, "pitch_layers": 2,
                     "source": "mel", "source_refine": 1},
           "train": {"segment_length": 2048, "pitch_prefit_steps": 150, "pitch_prefit_frames": 16,
                     "pitch_prefit_batch": 4, "pitch_prefit_lr": 5e-3}}
    task = VocoderTask(cfg, dumps["train"], dev_dump=dumps["dev"])
    fresh = VocoderTask({**cfg, "train": {**cfg["train"], "pitch_prefit_steps": 0}},
                        dumps["train"], dev_dump=dumps["dev"])
    before = fresh.pitch_dev_scores(fresh.build_model().pitch)
    model = task.build_model()
    after = task.pitch_dev_scores(model.pitch)
    # the tones are voiced at 150-190 Hz: untrained, the predictor calls almost every frame
    # unvoiced (V/UV error ~0.99, F0 off by ~36 Hz); pre-fitted, it is close
    assert before["dev_vuv_err"] > 0.5 and before["dev_f0_rmse_hz"] > 20
    assert after["dev_vuv_err"] < 0.1 and after["dev_f0_rmse_hz"] < 8
    # the source gets the dump's statistics (un-normalises the features)
    assert not torch.allclose(model.source.mel_mean, torch.zeros_like(model.source.mel_mean))
    # resuming: the checkpoint replaces the weights, so no pre-fit (the seed's initial weights)
    task.resuming = True
    again = task.build_model()
    init = fresh.build_model()
    for k, v in init.pitch.state_dict().items():
        assert torch.equal(again.pitch.state_dict()[k], v), k
