"""The saved-vocoder API: save/load, synthesis options, chunking, bf16, denoiser, errors."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from flowcheck import randomize
from vocoflow.vocoders import (
    Denoiser,
    Vocoder,
    VocoderError,
    WaveGlow,
    build_model,
    load,
    load_config,
    save_vocoder,
    snr_db,
)

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
N_MELS = 80
MEAN, SCALE = -6.0, 2.0


def _config(**model):
    cfg = load_config(CONFIGS / "waveglow_debug.yaml")
    cfg["model"].update(model)
    return load_config(cfg)


def _model(cfg, seed=0, std=0.05):
    torch.manual_seed(seed)
    return randomize(build_model(cfg), std=std, seed=seed)


def _stats():
    return {"mean": np.full(N_MELS, MEAN), "scale": np.full(N_MELS, SCALE)}


def raw_mel(frames=12, seed=0, batch=None):
    """A plausible raw log-mel (around the stats, never below the ln(1e-5) floor)."""
    g = torch.Generator().manual_seed(seed)
    shape = (N_MELS, frames) if batch is None else (batch, N_MELS, frames)
    return (MEAN + SCALE * torch.randn(shape, generator=g)).clamp_min(math.log(1e-5))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """(dir, model) of a tiny normalising vocoder."""
    cfg = _config()
    model = _model(cfg)
    d = save_vocoder(model, cfg, tmp_path_factory.mktemp("voc") / "debug", stats=_stats(),
                     info={"step": 7})
    return d, model


def test_directory_layout_and_config(saved):
    d, model = saved
    assert sorted(os.listdir(d)) == ["config.yaml", "model.pt", "stats.npz"]
    doc = yaml.safe_load((d / "config.yaml").read_text())
    assert doc["format"] == "vocoflow-vocoder" and doc["version"] == 1
    assert doc["normalize"] is True and doc["training"] == {"step": 7}
    assert doc["features"]["sample_rate"] == 16000 and doc["features"]["n_mels"] == N_MELS
    assert doc["model"]["type"] == "waveglow" and doc["synthesis"]["sigma"] == 0.6
    sd = torch.load(d / "model.pt", weights_only=True)
    assert set(sd) == set(model.state_dict())
    assert not [p for p in os.listdir(d.parent) if p.startswith(".")]  # no temp dirs left


def test_load_round_trip_gives_identical_synthesis(saved):
    d, model = saved
    a, b = load(d), Vocoder.from_pretrained(d)
    assert not a.model.has_weight_norm()
    mel = raw_mel(10)
    noise = torch.randn(1, 10 * 256)
    wa = a.synthesize(mel, noise=noise)
    wb = b.synthesize(mel, noise=noise)
    assert wa.shape == (2560,) and torch.equal(wa, wb)
    # the same as the in-memory model (weight norm still on) up to rounding
    with torch.no_grad():
        ref = model.eval().infer(b.normalize_mel(mel[None]), sigma=0.6, noise=noise)[0]
    assert torch.allclose(wa, ref, atol=1e-5)
    # the same generator seed gives the same audio; batches and numpy work
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    assert torch.equal(a.synthesize(mel, generator=g1), a.synthesize(mel.numpy(), generator=g2))
    assert a.synthesize(raw_mel(6, batch=3)).shape == (3, 6 * 256)


def test_float64_vocoder(saved):
    voc = load(saved[0], dtype=torch.float64)
    assert voc.synthesize(raw_mel(4)).dtype == torch.float32
    assert next(voc.model.parameters()).dtype == torch.float64


def test_normalized_input_option(saved):
    voc = load(saved[0])
    mel = raw_mel(8)
    noise = torch.randn(1, 8 * 256)
    a = voc.synthesize(mel, noise=noise)
    b = voc.synthesize((mel - MEAN) / SCALE, normalized=True, noise=noise)
    assert torch.allclose(a, b, atol=1e-6)


def test_mel_front_end(saved):
    voc = load(saved[0])
    t = torch.arange(16000) / 16000
    wav = 0.3 * torch.sin(2 * math.pi * 440 * t)
    mel = voc.mel(wav)
    assert mel.shape == (N_MELS, 62) and torch.isfinite(mel).all()
    assert voc.mel(wav.numpy()[None]).shape == (1, N_MELS, 62)
    assert voc.synthesize(mel).shape == (62 * 256,)


# --------------------------------------------------------------------------------------- errors
def test_foreign_directories(tmp_path):
    with pytest.raises(VocoderError, match="no such vocoder directory"):
        load(tmp_path / "missing")
    with pytest.raises(VocoderError, match=r"no config\.yaml"):
        load(tmp_path)
    (tmp_path / "config.yaml").write_text("format: espnet\nmodel: {}\n")
    with pytest.raises(VocoderError, match=r"format is 'espnet'.*vocoflow-vocoder"):
        load(tmp_path)
    (tmp_path / "config.yaml").write_text("format: vocoflow-vocoder\nversion: 9\n")
    with pytest.raises(VocoderError, match="version 9"):
        load(tmp_path)
    (tmp_path / "config.yaml").write_text("::: not yaml [\n")
    with pytest.raises(VocoderError, match=str(tmp_path)):
        load(tmp_path)


def test_corrupt_and_mismatched_weights(tmp_path, saved):
    cfg = _config()
    d = save_vocoder(_model(cfg), cfg, tmp_path / "v")
    (d / "model.pt").write_bytes(b"garbage, not a torch file")
    with pytest.raises(VocoderError, match=r"model\.pt: unreadable weights"):
        load(d)
    other = _config(wn_channels=8)
    torch.save(build_model(other).state_dict(), d / "model.pt")
    with pytest.raises(VocoderError, match=r"model\.pt: weights do not match.*wrong shape"):
        load(d)
    torch.save({"foo": torch.zeros(1)}, d / "model.pt")
    with pytest.raises(VocoderError, match="missing.*unexpected: foo"):
        load(d)
    os.unlink(d / "model.pt")
    with pytest.raises(VocoderError, match=r"missing model\.pt"):
        load(d)


def test_missing_stats_for_normalising_vocoder(tmp_path, saved):
    import shutil

    d = tmp_path / "v"
    shutil.copytree(saved[0], d)
    os.unlink(d / "stats.npz")
    with pytest.raises(VocoderError, match=r"normalize: true but stats\.npz is missing"):
        load(d)


def test_bad_mels(saved):
    voc = load(saved[0])
    with pytest.raises(VocoderError, match="40 bins.*n_mels=80"):
        voc.synthesize(torch.zeros(40, 10))
    with pytest.raises(VocoderError, match=r"looks like \(frames, n_mels\)"):
        voc.synthesize(raw_mel(10).T.contiguous())
    bad = raw_mel(10)
    bad[3, 4] = float("nan")
    with pytest.raises(VocoderError, match="NaN or infinite"):
        voc.synthesize(bad)
    bad[3, 4] = float("inf")
    with pytest.raises(VocoderError, match="NaN or infinite"):
        voc.synthesize(bad)


def test_normalisation_mismatch(saved):
    voc = load(saved[0])
    raw = raw_mel(40)
    with pytest.raises(VocoderError, match="looks already normalised.*normalized=True"):
        voc.synthesize((raw - MEAN) / SCALE)
    with pytest.raises(VocoderError, match="looks like raw log-mel"):
        voc.synthesize(raw, normalized=True)
    # a silent raw mel is still recognised as raw; check=False skips the test
    voc.synthesize(torch.full((N_MELS, 20), math.log(1e-5)))
    voc.synthesize((raw - MEAN) / SCALE, check=False)


def test_raw_vocoder_without_stats(tmp_path):
    cfg = _config()
    voc = load(save_vocoder(_model(cfg), cfg, tmp_path / "raw"))
    assert not voc.normalize and voc.stats_mean is None
    voc.synthesize(raw_mel(8))
    with pytest.raises(VocoderError, match="below the raw log floor"):
        voc.synthesize(torch.full((N_MELS, 8), -20.0))
    with pytest.raises(VocoderError, match="no stats.npz"):
        voc.synthesize(raw_mel(8), normalized=True, check=False)


def test_save_is_atomic_and_refuses_foreign_dirs(tmp_path, saved):
    cfg = _config()
    target = tmp_path / "v"
    save_vocoder(_model(cfg, seed=1), cfg, target)
    first = (target / "model.pt").read_bytes()
    save_vocoder(_model(cfg, seed=2), cfg, target)  # replaces a vocoder dir
    assert (target / "model.pt").read_bytes() != first
    assert sorted(os.listdir(tmp_path)) == ["v"]
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "a.txt").write_text("keep me")
    with pytest.raises(VocoderError, match="refusing"):
        save_vocoder(_model(cfg), cfg, foreign)
    assert (foreign / "a.txt").read_text() == "keep me"
    with pytest.raises(VocoderError, match="needs feature statistics"):
        save_vocoder(_model(cfg), cfg, tmp_path / "w", normalize=True)


# --------------------------------------------------------------------------------- synthesis
def _rich_vocoder(tmp_path):
    """A random model with a real receptive field (transposed upsampler, 3 WN layers)."""
    cfg = _config(wn_layers=3, upsample="transpose", upsample_kernel=512, lu=False)
    return load(save_vocoder(_model(cfg, std=0.1), cfg, tmp_path / "rich", stats=_stats()))


def test_chunked_matches_unchunked(tmp_path):
    voc = _rich_vocoder(tmp_path)
    frames = 40
    assert voc.model.context_frames < frames
    mel = raw_mel(frames, seed=3)
    noise = torch.randn(1, frames * 256, generator=torch.Generator().manual_seed(4))
    whole = voc.synthesize(mel, noise=noise)
    for chunk in (7, 16):
        part = voc.synthesize(mel, noise=noise, chunk_frames=chunk)
        assert snr_db(whole, part) >= 30
    assert snr_db(whole, voc.synthesize(mel, noise=noise, chunk_frames=7)) > 80  # exact context
    # a too-small context is visibly different (so the test above is not vacuous)
    assert snr_db(whole, voc.synthesize(mel, noise=noise, chunk_frames=7, context_frames=0)) < 60


def test_bf16_close_to_float32(tmp_path):
    voc = _rich_vocoder(tmp_path)
    mel = raw_mel(16, seed=5)
    noise = torch.randn(1, 16 * 256, generator=torch.Generator().manual_seed(6))
    a = voc.synthesize(mel, noise=noise)
    b = voc.synthesize(mel, noise=noise, bf16=True)
    assert not torch.equal(a, b)
    assert snr_db(a, b) >= 15  # a random model: bf16 weights (8 bits) in every conditioner
    wn = [m for m in voc._bf16_model.modules() if type(m).__name__ == "WN"]
    assert wn and all(p.dtype == torch.bfloat16 for m in wn for p in m.parameters())
    assert next(voc.model.parameters()).dtype == torch.float32


def test_batch_of_different_lengths(saved):
    voc = load(saved[0])
    mels = [raw_mel(5, seed=1), raw_mel(9, seed=2)]
    noises = [torch.randn(5 * 256), torch.randn(9 * 256)]
    out = voc.synthesize_batch(mels, noises=noises)
    assert [o.shape[0] for o in out] == [1280, 2304]
    alone = voc.synthesize(mels[1], noise=noises[1][None])
    assert torch.equal(out[1], alone)  # the longest item is not padded


def test_denoiser_removes_a_stationary_bias_tone():
    from vocoflow.audio.mel import get_preset

    sr = 16000
    t = torch.arange(sr) / sr
    tone = 0.05 * torch.sin(2 * math.pi * 1000 * t)
    g = torch.Generator().manual_seed(0)
    speech_like = 0.05 * torch.randn(sr, generator=g)
    d = Denoiser(tone[:8000], n_fft=1024)
    out = d(speech_like + tone, strength=1.0)

    def band(x, f=1000):
        spec = torch.fft.rfft(x).abs()
        return spec[f - 5: f + 6].pow(2).sum().item()

    assert band(out) < 0.1 * band(speech_like + tone)
    assert out.pow(2).sum() > 0.5 * speech_like.pow(2).sum()  # the rest is mostly kept
    assert torch.equal(d(speech_like, 0.0), speech_like)

    # through the vocoder: a (fresh, so silent at sigma 0) model that adds the tone to
    # everything it synthesises
    cfg = _config()
    torch.manual_seed(0)
    voc = Vocoder(build_model(cfg), get_preset("asterisk16k"))
    infer = voc.model.infer
    long_tone = 0.05 * torch.sin(2 * math.pi * 1000 * torch.arange(2 * sr) / sr)
    voc.model.infer = lambda mel, sigma=0.6, noise=None, generator=None: (
        infer(mel, sigma=sigma, noise=noise) + long_tone[: mel.shape[-1] * 256])
    mel = raw_mel(20)
    noise = 0.1 * torch.randn(1, 20 * 256)
    plain = voc.synthesize(mel, noise=noise, denoise=0.0)
    clean = voc.synthesize(mel, noise=noise, denoise=1.0)
    assert clean.shape == plain.shape
    assert band(clean[:4096], 1000 * 4096 // sr) < 0.1 * band(plain[:4096], 1000 * 4096 // sr)
    assert (clean - plain).pow(2).sum() < 2 * long_tone[:5120].pow(2).sum()


def test_vocoflow_load_export():
    import vocoflow

    assert vocoflow.load is load
    assert vocoflow.Vocoder is Vocoder


def test_in_memory_vocoder_from_model(tmp_path):
    from vocoflow.audio.mel import get_preset

    model = WaveGlow(n_mels=80, hop_length=256, n_group=4, n_flows=2, n_early_every=1,
                     n_early_size=1, wn_layers=1, wn_channels=4, upsample="repeat")
    voc = Vocoder(model, get_preset("asterisk16k"))
    assert voc.synthesize(raw_mel(3)).shape == (768,)
    assert "Vocoder(" in repr(voc)


def test_saving_a_model_with_weight_norm_folded(tmp_path):
    cfg = _config()
    model = _model(cfg).eval()
    mel = raw_mel(6)
    noise = torch.randn(1, 6 * 256)
    d1 = save_vocoder(model, cfg, tmp_path / "a", stats=_stats())
    d2 = save_vocoder(model.remove_weight_norm(), cfg, tmp_path / "b", stats=_stats())
    assert not any(".parametrizations." in k for k in torch.load(d2 / "model.pt"))
    a, b = load(d1), load(d2)
    assert torch.allclose(a.synthesize(mel, noise=noise), b.synthesize(mel, noise=noise), atol=1e-6)


def test_model_registry_types_capabilities_and_errors():
    from vocoflow.vocoders import VOCODER_MODELS, IAFStudent, WaveNetTeacher, model_config_from

    assert list(VOCODER_MODELS) == ["waveglow", "iaf_student", "wavenet_teacher"]
    assert VOCODER_MODELS.get("waveglow").cls is WaveGlow
    assert VOCODER_MODELS.of(WaveNetTeacher(n_mels=8, hop_length=16, n_layers=2)).name == "wavenet_teacher"
    assert VOCODER_MODELS.names(can_teach=True) == ["waveglow", "wavenet_teacher"]
    assert VOCODER_MODELS.names(parallel_density=True) == ["waveglow", "wavenet_teacher"]
    assert VOCODER_MODELS.names(parallel_sampling=False) == ["wavenet_teacher"]
    assert VOCODER_MODELS.get("iaf_student").cls is IAFStudent
    assert [VOCODER_MODELS.get(n).task for n in VOCODER_MODELS] == ["vocoder", "distill", "teacher"]
    for name in VOCODER_MODELS:
        assert VOCODER_MODELS.get(name).config.type_name == name
    with pytest.raises(ValueError,
                       match=r"unknown model type 'nope' \(known: waveglow, iaf_student, wavenet_teacher\)"):
        model_config_from({"features": {"preset": "asterisk16k"}, "model": {"type": "nope"}})
    with pytest.raises(ValueError, match="unknown capability"):
        VOCODER_MODELS.names(fast=True)
