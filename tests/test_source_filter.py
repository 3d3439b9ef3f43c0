"""Source-filter flow vocoders: pitch tracking, the harmonic excitation, the pitch predictor,
the data-dependent prior, the spectral loss on samples, and their plumbing (dumps, training,
synthesis, chunking, errors)."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch

from flowcheck import jacobian_logdet, randomize
from vocoflow.audio import MelConfig
from vocoflow.audio.pitch import PitchConfig, lf0_statistics, track_f0
from vocoflow.nets.excitation import HarmonicExcitation, upsample_f0
from vocoflow.nets.pitch import PitchPredictor, f0_to_target
from vocoflow.vocoders import WaveGlow
from vocoflow.vocoders.synthesis import chunked_infer


def tiny(coupling="affine", seed=0, **kw):
    torch.manual_seed(seed)
    cfg = dict(n_mels=4, hop_length=8, n_group=4, n_flows=3, n_early_every=1, n_early_size=1,
               wn_layers=2, wn_channels=8, coupling=coupling, upsample_kernel=16,
               residual_hidden=8, residual_layers=2, residual_logdet="exact", mix_components=2,
               sample_rate=800, excitation_harmonics=3, pitch_channels=8, pitch_layers=2,
               prior="mel", cond_proj=6)
    cfg.update(kw)
    model = WaveGlow(**cfg).double()
    return randomize(model, std=0.05 if coupling == "residual" else 0.2, seed=seed)


def _data(model, batch=2, frames=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    hop = model.config.hop_length
    audio = torch.randn(batch, frames * hop, generator=g, dtype=torch.float64) * 0.5
    mel = torch.randn(batch, model.config.n_mels, frames, generator=g, dtype=torch.float64)
    f0 = torch.tensor([[0.0, 110.0, 130.0], [90.0, 95.0, 0.0]], dtype=torch.float64)[:batch, :frames]
    return audio, mel, f0


# ---------------------------------------------------------------------------- excitation
def test_excitation_phase_is_continuous_across_frames():
    sr, hop = 16000, 160
    exc = HarmonicExcitation(sr, hop, n_harmonics=1)
    f0 = torch.tensor([[100.0, 120.0, 150.0, 150.0, 0.0, 200.0]], dtype=torch.float64)
    f, v = upsample_f0(f0, hop)
    phi = exc.phase(f)[0].numpy()
    # phase increments equal 2 pi f / sr sample by sample, frame boundaries included
    d = np.diff(np.unwrap(phi))
    want = 2 * math.pi * f[0, :-1].numpy() / sr
    assert np.abs(d - want).max() < 1e-9
    # the instantaneous frequency has no step at a boundary between two voiced frames
    assert abs(f[0, hop - 1] - f[0, hop]) < 1.0
    e = exc(f0)[0]
    assert torch.all(e[0, 4 * hop: 5 * hop] == 0) and torch.all(e[1, 4 * hop: 5 * hop] == 0)
    # a constant F0 gives exactly sin(2 pi f n / sr)
    n = torch.arange(2 * hop, dtype=torch.float64)
    const = exc(torch.full((1, 2), 150.0, dtype=torch.float64))[0, 0]
    assert torch.allclose(const, torch.sin(2 * math.pi * 150.0 * n / sr), atol=1e-9)


def test_excitation_drops_harmonics_above_nyquist():
    exc = HarmonicExcitation(1000, 10, n_harmonics=4, max_fraction=0.9)  # nyquist*0.9 = 450 Hz
    e = exc(torch.full((1, 3), 200.0))
    assert e[0, 0].abs().max() > 0.5 and e[0, 1].abs().max() > 0.5  # 200, 400 Hz
    assert e[0, 2].abs().max() == 0 and e[0, 3].abs().max() == 0   # 600, 800 Hz
    with pytest.raises(ValueError, match="finite"):
        exc(torch.tensor([[float("nan"), 100.0]]))


def test_chunked_synthesis_equals_unchunked_with_excitation():
    model = tiny().eval()
    frames = 40
    g = torch.Generator().manual_seed(3)
    mel = torch.randn(1, 4, frames, generator=g, dtype=torch.float64)
    f0 = torch.where(torch.rand(1, frames, generator=g) > 0.3,
                     100 + 50 * torch.rand(1, frames, generator=g), torch.zeros(1, frames)).double()
    noise = torch.randn(1, frames * 8, generator=g, dtype=torch.float64)
    with torch.no_grad():
        whole = model.infer(mel, sigma=0.7, noise=noise, f0=f0)
        for chunk in (7, 13):
            parts = chunked_infer(model, mel, 0.7, noise, chunk, f0=f0)
            assert (parts - whole).abs().max().item() < 1e-9
        # the excitation restarted in every chunk (the wrong way) would not match
        y = model.infer(mel[..., :20], sigma=0.7, noise=noise[:, :160], f0=f0[:, :20])
        y2 = model.infer(mel[..., 20:], sigma=0.7, noise=noise[:, 160:], f0=f0[:, 20:])
        assert (torch.cat([y, y2], 1) - whole).abs().max().item() > 1e-6
        # predicted F0 (no f0 given) is chunked consistently too
        a = model.infer(mel, sigma=0.7, noise=noise)
        b = chunked_infer(model, mel, 0.7, noise, 9)
        assert (a - b).abs().max().item() < 1e-9


# ------------------------------------------------------------------------ flow with excitation
@pytest.mark.parametrize("coupling", ["affine", "additive", "mixlogistic", "residual"])
def test_every_coupling_inverts_and_has_exact_logdet_with_excitation(coupling):
    model = tiny(coupling, prior="none" if coupling == "residual" else "mel").eval()
    audio, mel, f0 = _data(model, frames=2)
    with torch.no_grad():
        z, logdet = model(audio, mel, f0=f0)
        s = torch.ones_like(z) if model.prior_net is None else torch.exp(model.prior_log_scale(mel))
        back = model.infer(mel, sigma=1.0, noise=z / s, f0=f0)
    assert (back - audio).abs().max().item() < 1e-9
    ref = jacobian_logdet(lambda a: model(a, mel, f0=f0)[0], audio)
    assert torch.allclose(logdet, ref, atol=1e-7)
    # the excitation reaches the couplings: another F0 gives another latent
    z2, _ = model(audio, mel, f0=f0 * 1.5)
    assert (z2 - z).abs().max().item() > 1e-6


def test_prior_nll_against_an_independent_computation():
    model = tiny().eval()
    with torch.no_grad():  # a non-trivial prior
        model.prior_net.weight.normal_(0, 0.5)
        model.prior_net.bias.fill_(-0.3)
    audio, mel, f0 = _data(model)
    sigma = 0.8
    lp = model.log_prob(audio, mel, sigma=sigma, f0=f0)
    z, logdet = model(audio, mel, f0=f0)
    # independent: per-frame scale from the 1x1 conv in numpy, the Gaussian density by hand
    w = model.prior_net.weight.detach().numpy()[0, :, 0]
    b = float(model.prior_net.bias.detach())
    c = model.config.prior_clamp
    ls_frames = c * np.tanh((np.einsum("m,bmf->bf", w, mel.numpy()) + b) / c)  # (B, frames)
    per_frame = model.config.hop_length // model.config.n_group
    ls = np.repeat(ls_frames, per_frame, axis=1)[:, None, :]  # (B, 1, columns)
    scale = sigma * np.exp(ls)
    zn = z.detach().numpy()
    ref = (-0.5 * (zn / scale) ** 2 - np.log(scale) - 0.5 * math.log(2 * math.pi)).sum(axis=(1, 2))
    ref = ref + logdet.detach().numpy()
    assert np.allclose(lp.detach().numpy(), ref, atol=1e-9)
    # and it is not the plain N(0, sigma^2) density
    plain = model.base_log_prob(z, mel * 0 + 1e9, sigma)  # not used: just exercising clamp
    assert torch.isfinite(plain).all()
    model.prior_net = None
    assert not np.allclose(model.log_prob(audio, mel, sigma=sigma, f0=f0).detach().numpy(), ref)


def test_missing_or_mismatched_f0_is_a_clear_error():
    model = tiny().eval()
    audio, mel, f0 = _data(model)
    with pytest.raises(ValueError, match="f0 must be"):
        model(audio, mel, f0=f0[:, :2])
    with pytest.raises(ValueError, match="excitation"):
        model.condition(mel)
    plain = tiny(excitation_harmonics=0, prior="none", cond_proj=0)
    with pytest.raises(ValueError, match="no excitation"):
        plain.predict_f0(mel)


def test_training_outputs_sample_and_pitch_loss_in_one_forward():
    model = tiny().train()
    audio, mel, f0 = _data(model)
    out = model(audio, mel, f0=f0, sigma=1.0, sample_sigma=0.5, pitch_loss=True)
    assert out["sample"].shape == audio.shape
    assert torch.allclose(out["log_prob"], model.log_prob(audio, mel, 1.0, f0=f0).float())
    total = -out["log_prob"].mean() + out["sample"].pow(2).mean() + out["pitch_loss"]
    total.backward()
    assert model.pitch.out.weight.grad.abs().sum() > 0
    assert model.prior_net.weight.grad.abs().sum() > 0
    assert model.cond_proj.weight.grad.abs().sum() > 0


# ------------------------------------------------------------------------- pitch predictor
def test_pitch_target_round_trip_and_fit():
    mean, scale = math.log(140.0), 0.2
    f0 = torch.tensor([[0.0, 100.0, 150.0, 220.0]])
    target, voiced = f0_to_target(f0, mean, scale)
    assert torch.allclose(torch.exp(target * scale + mean)[voiced], f0[voiced])
    # a predictor learns F0 and voicing that are visible in the "mel"
    torch.manual_seed(0)
    frames = 64
    g = torch.Generator().manual_seed(0)
    true = torch.where(torch.rand(8, frames, generator=g) > 0.3,
                       torch.exp(mean + scale * torch.randn(8, frames, generator=g)), torch.zeros(8, frames))
    lf0, v = f0_to_target(true, mean, scale)
    mel = torch.stack([lf0, v.float() * 2 - 1, torch.randn(8, frames, generator=g)], 1)
    p = PitchPredictor(3, channels=16, n_layers=2, kernel_size=3, lf0_mean=mean, lf0_scale=scale)
    opt = torch.optim.Adam(p.parameters(), 1e-2)
    for _ in range(300):
        loss, _ = p.loss(mel, true)
        opt.zero_grad()
        loss.backward()
        opt.step()
    pred = p.predict_f0(mel).detach()
    assert ((pred > 0) == (true > 0)).float().mean() > 0.97
    both = (pred > 0) & (true > 0)
    assert torch.sqrt(((pred[both] - true[both]) ** 2).mean()) < 10.0


def test_vocoder_directory_keeps_the_predictor(tmp_path):
    from vocoflow.vocoders import Vocoder, save_vocoder

    model = tiny(sample_rate=16000, hop_length=16, n_mels=80).float().eval()
    model.pitch.set_statistics(5.1, 0.3)
    features = MelConfig.from_dict({"preset": "asterisk16k", "hop_length": 16, "n_fft": 64,
                                    "win_length": 64})
    cfg = {"features": features.to_dict(), "model": {"type": "waveglow", **model.config.to_dict()},
           "train": {}, "synthesis": {"sigma": 0.6, "denoise": 0.0}}
    save_vocoder(model, cfg, tmp_path / "voc")
    voc = Vocoder.from_pretrained(tmp_path / "voc")
    assert voc.uses_excitation
    assert float(voc.model.pitch.lf0_mean) == pytest.approx(5.1)
    mel = torch.randn(80, 12)
    assert torch.equal(voc.predict_f0(mel, check=False),
                       model.predict_f0(mel[None].float())[0].detach())
    a = voc.synthesize(mel, noise=torch.zeros(12 * 16), check=False)
    b = voc.synthesize(mel, noise=torch.zeros(12 * 16), check=False, f0=torch.full((12,), 120.0))
    assert a.shape == (12 * 16,) and not torch.allclose(a, b)
    with pytest.raises(ValueError, match="one value per mel frame"):
        voc.synthesize(mel, check=False, f0=torch.full((11,), 120.0))
    c = voc.synthesize(mel, noise=torch.zeros(12 * 16), check=False, f0=torch.full((12,), 120.0),
                       chunk_frames=5)
    assert (c - b).abs().max() < 1e-5


# --------------------------------------------------------------------------- pitch tracking
def test_tracker_on_the_frame_grid():
    sr, hop = 16000, 256
    t = np.arange(sr) / sr
    f = 120 + 60 * t  # a glide 120 -> 180 Hz
    wav = 0.5 * np.sin(2 * np.pi * np.cumsum(f) / sr)
    wav[: sr // 4] = 0.0  # a silent start is unvoiced
    f0 = track_f0(wav, sr, hop, frames=len(wav) // hop, config=PitchConfig())
    assert f0.shape == (62,) and f0.dtype == np.float32
    centre = (np.arange(62) + 0.5) * hop / sr
    voiced = f0 > 0
    assert voiced[20:-2].all() and not voiced[:12].any()
    assert np.abs(f0[voiced][2:-2] - (120 + 60 * centre[voiced][2:-2])).max() < 3.0
    mean, std, n = lf0_statistics([f0])
    assert n == voiced.sum() and abs(math.exp(mean) - 160) < 15


def test_preprocess_writes_f0_and_training_refuses_a_dump_without_it(tmp_path, good_data_dir):
    from vocoflow.audio.dataset import AudioMelDataset
    from vocoflow.audio.dump import preprocess
    from vocoflow.train.vocoder_task import ConfigError, VocoderTask

    cfg = MelConfig.from_dict({"preset": "asterisk16k"})
    with_f0 = tmp_path / "with"
    res = preprocess(good_data_dir, with_f0, cfg, pitch=PitchConfig())
    assert res.n_ok > 0 and (with_f0 / "f0.scp").is_file() and (with_f0 / "pitch_config.yaml").is_file()
    ds = AudioMelDataset(with_f0, 1024)
    item = ds[0]
    assert ds.has_f0 and item["f0"].shape == (1024 // cfg.hop_length,)
    whole = AudioMelDataset(with_f0)[0]
    assert whole["f0"].shape[0] == whole["mel"].shape[1]
    without = tmp_path / "without"
    preprocess(good_data_dir, without, cfg)
    assert not (without / "f0.scp").exists()
    config = {"features": cfg.to_dict(), "train": {"segment_length": 1024},
              "model": {"type": "waveglow", "n_group": 8, "n_flows": 2, "n_early_every": 0,
                        "wn_layers": 2, "wn_channels": 8, "excitation_harmonics": 4}}
    with pytest.raises(ConfigError, match="no f0.scp"):
        VocoderTask(config, without)
    # a track that does not match its mel is named with its utterance
    broken = tmp_path / "broken"
    shutil.copytree(with_f0, broken)
    lines = (broken / "f0.scp").read_text().splitlines()
    (broken / "f0.scp").write_text("\n".join(lines[1:]) + "\n")
    with pytest.raises(ValueError, match="no F0 for utterance"):
        AudioMelDataset(broken, 1024)
    task = VocoderTask(config, with_f0)
    model = task.build_model()
    assert float(model.pitch.lf0_mean) == pytest.approx(task.lf0_statistics()[0])
    batch = task.collate([task.train_dataset()[i] for i in range(2)])
    assert len(batch) == 3
    loss, logs = task.loss(model, batch, [0, 1], 1)
    assert torch.isfinite(loss) and {"nll", "f0_l1", "vuv_bce"} <= set(logs)


def test_spectral_loss_term_in_training(tmp_path, good_data_dir):
    from vocoflow.audio.dump import preprocess
    from vocoflow.train.vocoder_task import ConfigError, VocoderTask

    cfg = MelConfig.from_dict({"preset": "asterisk16k"})
    preprocess(good_data_dir, tmp_path / "d", cfg, pitch=PitchConfig())
    config = {"features": cfg.to_dict(),
              "train": {"segment_length": 4096, "spectral_weight": 0.5, "spectral_every": 2},
              "model": {"type": "waveglow", "n_group": 8, "n_flows": 2, "n_early_every": 0,
                        "wn_layers": 2, "wn_channels": 8, "excitation_harmonics": 4,
                        "prior": "mel", "cond_proj": 16}}
    short = {**config, "train": {**config["train"], "segment_length": 1024}}
    with pytest.raises(ConfigError, match="too short for the spectral loss"):
        VocoderTask(short, tmp_path / "d")
    task = VocoderTask(config, tmp_path / "d")
    model = task.build_model()
    batch = task.collate([task.train_dataset()[i] for i in range(2)])
    loss2, logs2 = task.loss(model, batch, [0, 1], 2)
    loss1, logs1 = task.loss(model, batch, [0, 1], 1)  # not a spectral step
    assert {"sc", "logmag", "mel_l1", "spec"} <= set(logs2) and "spec" not in logs1
    assert float(loss2.detach()) > float(loss1.detach())
    loss2.backward()
    assert all(p.grad is not None for p in model.bijector.parameters() if p.requires_grad)


def test_source_filter_waveglow_trains_from_the_cli_and_teaches_a_student(tmp_path):
    """`vocoflow train` on dumps with F0, the exported vocoder synthesises from the mel alone,
    scores a held-out NLL given the dump's F0, and stage 6 accepts it as a teacher."""
    import importlib
    import json
    from pathlib import Path

    from data_fixtures import make_tone_dumps

    cli_main = importlib.import_module("vocoflow.cli.main")
    from vocoflow.audio.kaldi_io import read_feats
    from vocoflow.cli.evaluate import heldout_nll
    from vocoflow.vocoders import load

    root = Path(__file__).resolve().parent.parent
    dumps = make_tone_dumps(tmp_path, (("train", 3), ("dev", 2)), seconds=0.6, freq=150.0,
                            step=40.0, pitch=PitchConfig())
    for name in ("train", "dev"):
        assert (dumps[name] / "f0.scp").is_file()
    conf = root / "egs" / "asterisk_en" / "voc1" / "conf" / "debug.yaml"
    assert cli_main.main(["train", "--config", str(conf), "--train-dump", str(dumps["train"]),
                          "--dev-dump", str(dumps["dev"]), "--out-dir", str(tmp_path / "wg"),
                          "--cpu", "--no-progress", "--steps", "2"]) == 0
    voc = load(tmp_path / "wg" / "model")
    assert voc.uses_excitation and voc.model.prior_net is not None
    f0 = voc.predict_f0(torch.zeros(80, 10) - 3.0)
    assert f0.shape == (10,)
    # decode with the dump's F0 (a TTS front end's F0 in the same format); a track of the wrong
    # length is recorded per utterance and the others are still written
    f0_scp = dumps["dev"] / "f0.scp"
    assert cli_main.main(["decode", "--model", str(tmp_path / "wg" / "model"), "--no-progress",
                          "--feats-scp", str(dumps["dev"] / "feats.scp"), "--no-normalize",
                          "--f0-scp", str(f0_scp), "--out-dir", str(tmp_path / "dec")]) == 0
    assert sorted(p.name for p in (tmp_path / "dec").glob("*.wav")) == ["dev0.wav", "dev1.wav"]
    bad = tmp_path / "bad_f0.scp"
    bad.write_text(f0_scp.read_text().splitlines()[0] + "\n")  # dev1 has no F0
    assert cli_main.main(["decode", "--model", str(tmp_path / "wg" / "model"), "--no-progress",
                          "--feats-scp", str(dumps["dev"] / "feats.scp"), "--no-normalize",
                          "--f0-scp", str(bad), "--out-dir", str(tmp_path / "dec2")]) == 2
    assert "no F0 for utterance dev1" in (tmp_path / "dec2" / "bad_utts").read_text()
    nll = heldout_nll(str(tmp_path / "wg" / "model"), str(dumps["dev"]))
    assert math.isfinite(nll)
    assert cli_main.main(["distill", "--teacher", str(tmp_path / "wg" / "model"),
                          "--config", str(conf.parent / "distill_affine.yaml"),
                          "--train-dump", str(dumps["train"]), "--dev-dump", str(dumps["dev"]),
                          "--out-dir", str(tmp_path / "student"), "--cpu", "--no-progress",
                          "--steps", "2", "--set", "model.flow_layers=[2, 2]",
                          "--set", "model.channels=8", "--set", "train.batch_size=2"]) == 0
    recs = [json.loads(ln) for ln in (tmp_path / "student" / "train_log.jsonl").read_text().splitlines()]
    assert any("loss" in r and math.isfinite(r["loss"]) for r in recs)
    # a student with the excitation and the mel source: F0 from the dump in training, the
    # teacher's pitch predictor (copied) at synthesis
    assert cli_main.main(["distill", "--teacher", str(tmp_path / "wg" / "model"),
                          "--config", str(conf.parent / "distill_affine.yaml"),
                          "--train-dump", str(dumps["train"]), "--dev-dump", str(dumps["dev"]),
                          "--out-dir", str(tmp_path / "student_sf"), "--cpu", "--no-progress",
                          "--steps", "2", "--set", "model.flow_layers=[2, 2]",
                          "--set", "model.channels=8", "--set", "train.batch_size=2",
                          "--set", "model.excitation_harmonics=4", "--set", "model.source=mel",
                          "--set", "model.source_refine=1", "--set", "model.pitch_channels=16",
                          "--set", "model.pitch_layers=2"]) == 0
    sv = load(tmp_path / "student_sf" / "model")
    assert sv.uses_excitation and sv.model.source is not None
    for k, v in voc.model.pitch.state_dict().items():
        assert torch.equal(sv.model.pitch.state_dict()[k], v)
    assert torch.allclose(sv.model.source.mel_mean, voc.model.source.mel_mean)
    mel = torch.as_tensor(next(iter(read_feats(dumps["dev"] / "feats.scp")))[1].T.copy())
    y = sv.synthesize(mel, normalized=True)
    assert y.shape[-1] == mel.shape[-1] * 256 and torch.isfinite(y).all()
