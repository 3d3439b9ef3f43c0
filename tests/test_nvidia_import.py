"""Importing NVIDIA WaveGlow checkpoints (``vocoflow import-waveglow``, vocoflow.vocoders.nvidia).

The fake checkpoints are made the way NVIDIA's ``train.py`` saves them (``torch.save({'model':
<module>, 'iteration', 'optimizer', 'learning_rate'})``, zip or legacy format) from modules laid
out like NVIDIA's ``glow.py`` (``upsample``, ``WN.k.{start, in_layers, res_skip_layers,
cond_layer, end}``, ``convinv.k.conv``, old-style weight norm ``weight_g``/``weight_v``, and the
older ``cond_layers`` / ``res_layers``+``skip_layers`` layouts), whose classes live in a throwaway
module registered as ``glow`` (or ``glow_old``) in ``sys.modules`` only while saving. The
expected audio comes from :func:`reference_infer`, an independent plain-torch reading of
NVIDIA's ``WaveGlow.infer``.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import types
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from vocoflow.audio import MelSpectrogram
from vocoflow.nets.upsample import MelUpsampler
from vocoflow.vocoders import Vocoder, read_vocoder_dir
from vocoflow.vocoders.nvidia import NvidiaCheckpointError, import_waveglow, tacotron2_features

cli_main = importlib.import_module("vocoflow.cli.main")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

N_MELS, HOP, KERNEL = 16, 256, 1024
ARCH = dict(n_flows=5, n_group=8, n_early_every=2, n_early_size=2, n_layers=3, n_channels=16, kernel=3)


# ------------------------------------------------------------------- NVIDIA-shaped checkpoints
def _wn(conv):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.nn.utils.weight_norm is deprecated (NVIDIA used it)
        return torch.nn.utils.weight_norm(conv, name="weight")


def build_nvidia(layout: str = "fused", n_mels: int = N_MELS, seed: int = 0, arch: dict = ARCH,
                 module: str = "glow"):
    """A module tree laid out like NVIDIA's WaveGlow (random weights), classes in ``module``."""
    a = dict(arch)
    C, L, K = a["n_channels"], a["n_layers"], a["kernel"]

    class WaveGlow(nn.Module):
        pass

    class WN(nn.Module):
        pass

    class Invertible1x1Conv(nn.Module):
        pass

    fake = types.ModuleType(module)
    for cls in (WaveGlow, WN, Invertible1x1Conv):
        cls.__module__, cls.__qualname__ = module, cls.__name__
        setattr(fake, cls.__name__, cls)
    g = torch.Generator().manual_seed(seed)
    top = WaveGlow()
    top.upsample = nn.ConvTranspose1d(n_mels, n_mels, KERNEL, stride=HOP)
    top.n_flows, top.n_group = a["n_flows"], a["n_group"]
    top.n_early_every, top.n_early_size = a["n_early_every"], a["n_early_size"]
    top.WN, top.convinv = nn.ModuleList(), nn.ModuleList()
    remaining = a["n_group"]
    for k in range(a["n_flows"]):
        if k % a["n_early_every"] == 0 and k > 0:
            remaining -= a["n_early_size"]
        inv = Invertible1x1Conv()
        inv.conv = nn.Conv1d(remaining, remaining, 1, bias=False)
        inv.conv.weight.data = torch.linalg.qr(torch.randn(remaining, remaining, generator=g))[0][..., None]
        top.convinv.append(inv)
        half = remaining // 2
        w = WN()
        w.n_layers, w.n_channels = L, C
        w.start = _wn(nn.Conv1d(half, C, 1))
        w.in_layers = nn.ModuleList(_wn(nn.Conv1d(C, 2 * C, K, dilation=2**i, padding=(K - 1) * 2**i // 2))
                                    for i in range(L))
        cond_in = n_mels * a["n_group"]
        if layout == "fused":
            w.cond_layer = _wn(nn.Conv1d(cond_in, 2 * C * L, 1))
        else:
            w.cond_layers = nn.ModuleList(_wn(nn.Conv1d(cond_in, 2 * C, 1)) for _ in range(L))
        if layout == "separate":
            w.res_layers = nn.ModuleList(_wn(nn.Conv1d(C, C, 1)) for _ in range(L - 1))
            w.skip_layers = nn.ModuleList(_wn(nn.Conv1d(C, C, 1)) for _ in range(L))
        else:
            w.res_skip_layers = nn.ModuleList(_wn(nn.Conv1d(C, 2 * C if i < L - 1 else C, 1))
                                              for i in range(L))
        w.end = nn.Conv1d(C, 2 * half, 1)
        top.WN.append(w)
    with torch.no_grad():
        for name, p in top.named_parameters():
            if name.startswith("convinv"):
                continue
            if name.endswith("weight_g"):
                p.copy_(1.0 + 0.2 * torch.rand(p.shape, generator=g))
            else:
                scale = 0.02 if name.startswith("upsample") else 0.1 if ".end." in name else 0.3
                p.copy_(scale * torch.randn(p.shape, generator=g))
    return top, fake


def save_like_train_py(model, fake_module, path, legacy: bool = False, what: str = "checkpoint"):
    """``torch.save`` as NVIDIA's train.py does, with the fake module importable only meanwhile."""
    name = fake_module.__name__
    sys.modules[name] = fake_module
    try:
        if what == "checkpoint":
            n = len(list(model.parameters()))  # an Adam state_dict before its first step
            optimizer = {"state": {}, "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.999), "eps": 1e-8,
                                                        "weight_decay": 0, "amsgrad": False,
                                                        "params": list(range(n))}]}
            obj = {"model": model, "iteration": 580000, "optimizer": optimizer, "learning_rate": 1e-4}
        elif what == "state_dict":
            obj = {"module." + k: v for k, v in model.state_dict().items()}  # as saved from DDP
        else:
            obj = model
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # legacy format: "couldn't retrieve source code"
            torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    finally:
        del sys.modules[name]
    assert name not in sys.modules
    return path


# ------------------------------------------------------------- reference: NVIDIA's infer, read
def _weight(sd, prefix):
    if prefix + ".weight_g" in sd:
        g, v = sd[prefix + ".weight_g"], sd[prefix + ".weight_v"]
        return g * v / v.flatten(1).norm(dim=1)[:, None, None], sd[prefix + ".bias"]
    return sd[prefix + ".weight"], sd[prefix + ".bias"]


def _reference_wn(sd, k, x, spect, L, C, K):
    p = f"WN.{k}"
    h = F.conv1d(x, *_weight(sd, p + ".start"))
    if p + ".cond_layer.bias" in sd:
        c = F.conv1d(spect, *_weight(sd, p + ".cond_layer"))
        conds = [c[:, 2 * C * i: 2 * C * (i + 1)] for i in range(L)]
    else:
        conds = [F.conv1d(spect, *_weight(sd, f"{p}.cond_layers.{i}")) for i in range(L)]
    skip = 0
    for i in range(L):
        d = 2**i
        a = F.conv1d(h, *_weight(sd, f"{p}.in_layers.{i}"), dilation=d, padding=d * (K - 1) // 2) + conds[i]
        acts = torch.tanh(a[:, :C]) * torch.sigmoid(a[:, C:])
        if f"{p}.skip_layers.0.bias" in sd:
            if i < L - 1:
                h = h + F.conv1d(acts, *_weight(sd, f"{p}.res_layers.{i}"))
            skip = skip + F.conv1d(acts, *_weight(sd, f"{p}.skip_layers.{i}"))
        else:
            rs = F.conv1d(acts, *_weight(sd, f"{p}.res_skip_layers.{i}"))
            if i < L - 1:
                h, skip = h + rs[:, :C], skip + rs[:, C:]
            else:
                skip = skip + rs
    return F.conv1d(skip, sd[p + ".end.weight"], sd[p + ".end.bias"])


def reference_infer(model, mel, sigma=0.0, z=None, alternate=False, arch=ARCH):
    """NVIDIA's ``WaveGlow.infer(mel, sigma)`` in float64 plain torch ops, from its weights;
    ``z`` (B, n_group, groups) is the unit noise in vocoflow's latent layout (early outputs
    first, outermost level first), zeros by default."""
    sd = {k: v.detach().double() for k, v in model.state_dict().items()}
    g, every, es = arch["n_group"], arch["n_early_every"], arch["n_early_size"]
    C, L, K = arch["n_channels"], arch["n_layers"], arch["kernel"]
    up = F.conv_transpose1d(mel.double(), sd["upsample.weight"], sd["upsample.bias"], stride=HOP)
    up = up[:, :, : up.shape[2] - (KERNEL - HOP)]  # infer() drops the last kernel - stride samples
    B, M, T = up.shape
    G = T // g
    spect = up.reshape(B, M, G, g).permute(0, 1, 3, 2).reshape(B, M * g, G)  # channel m*g + j
    if z is None:
        z = torch.zeros(B, g, G, dtype=torch.float64)
    n_flows = arch["n_flows"]
    n_rem = g - es * ((n_flows - 1) // every)
    audio = sigma * z[:, g - n_rem:].double()
    for k in reversed(range(n_flows)):
        h = audio.shape[1] // 2
        swap = alternate and k % 2 == 1  # glow_old: odd flows keep the second half fixed
        fixed, moved = (audio[:, h:], audio[:, :h]) if swap else (audio[:, :h], audio[:, h:])
        out = _reference_wn(sd, k, fixed, spect, L, C, K)
        b, s = out[:, :h], out[:, h:]
        moved = (moved - b) / torch.exp(s)
        audio = torch.cat([moved, fixed] if swap else [fixed, moved], dim=1)
        w = sd[f"convinv.{k}.conv.weight"][:, :, 0]
        audio = F.conv1d(audio, torch.linalg.inv(w)[..., None])
        if k % every == 0 and k > 0:
            j = k // every
            audio = torch.cat([sigma * z[:, (j - 1) * es: j * es].double(), audio], dim=1)
    return audio.permute(0, 2, 1).reshape(B, -1)


def _mel(frames=12, batch=1, seed=3, n_mels=N_MELS):
    return -5.0 + 0.7 * torch.randn(batch, n_mels, frames, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def fused(tmp_path_factory):
    """A current-layout checkpoint (zip) and its imported vocoder directory."""
    root = tmp_path_factory.mktemp("nvidia")
    model, fake = build_nvidia("fused")
    ck = save_like_train_py(model, fake, root / "waveglow_580000")
    out = import_waveglow(ck, root / "voc")
    return {"root": root, "model": model, "ck": ck, "out": out}


# --------------------------------------------------------------------------------- exactness
@pytest.mark.parametrize("layout,legacy,module", [
    ("fused", True, "glow"),            # the current glow.py, torch's legacy (non-zip) format
    ("cond_layers", False, "glow"),     # before the conditioning convs were fused (2019 models)
    ("separate", True, "glow"),         # the first release: separate res/skip convs
    ("cond_layers", False, "glow_old"),  # glow_old.py: alternating coupling halves
])
def test_imported_model_equals_nvidia_infer(tmp_path, layout, legacy, module):
    model, fake = build_nvidia(layout, module=module, seed=1)
    ck = save_like_train_py(model, fake, tmp_path / "ck.pt", legacy=legacy)
    assert module not in sys.modules
    out = import_waveglow(ck, tmp_path / "voc")
    mel = _mel()
    alternate = module == "glow_old"
    ref = reference_infer(model, mel, alternate=alternate)
    assert ref.shape == (1, 12 * HOP) and float(ref.abs().max()) > 0.1
    saved = read_vocoder_dir(out)
    assert saved.model.has_weight_norm() and saved.model.config.alternate_halves == alternate
    m = saved.model.double().eval()
    with torch.no_grad():
        y = m.infer(mel.double(), sigma=0.0)
        assert float((y - ref).abs().max()) < 1e-10
        # the same noise at sigma 1: the early outputs and the latent layout agree too
        z = torch.randn(1, 8, 12 * HOP // 8, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
        ref1 = reference_infer(model, mel, sigma=1.0, z=z, alternate=alternate)
        assert float((m.infer(mel.double(), sigma=1.0, noise=z) - ref1).abs().max()) < 1e-9
    # the float32 synthesis API
    wav = Vocoder.from_pretrained(out).synthesize(mel[0], sigma=0.0, check=False)
    assert float((wav.double() - ref[0]).abs().max()) < 1e-4 * float(ref.abs().max())


def test_folded_weight_norm_and_plain_state_dict(tmp_path, fused):
    mel = _mel()
    ref = reference_infer(fused["model"], mel)
    folded = import_waveglow(fused["ck"], tmp_path / "folded", fold_weight_norm=True)
    sd = torch.load(folded / "model.pt", weights_only=True)
    assert not any(".parametrizations." in k for k in sd)
    assert read_vocoder_dir(folded).config["training"]["weight_norm"] == "folded"
    # a plain state dict (keys prefixed by DistributedDataParallel's 'module.')
    model, fake = build_nvidia("fused")
    plain = save_like_train_py(model, fake, tmp_path / "sd.pt", what="state_dict")
    kept = import_waveglow(plain, tmp_path / "kept")
    for d in (folded, kept):
        m = read_vocoder_dir(d).model.double().eval()
        with torch.no_grad():
            assert float((m.infer(mel.double(), sigma=0.0) - ref).abs().max()) < 1e-5
    # a state dict saved after NVIDIA's remove_weightnorm (plain 'weight' keys): folded on import
    for mod in model.modules():
        if hasattr(mod, "weight_g"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.nn.utils.remove_weight_norm(mod)
    removed = save_like_train_py(model, fake, tmp_path / "removed.pt", what="state_dict")
    m = read_vocoder_dir(import_waveglow(removed, tmp_path / "removed")).model.double().eval()
    assert not m.has_weight_norm()
    with torch.no_grad():
        assert float((m.infer(mel.double(), sigma=0.0) - ref).abs().max()) < 1e-5


def test_saved_directory_features_and_info(fused):
    saved = read_vocoder_dir(fused["out"])
    feats = saved.features
    assert feats == tacotron2_features().replace(n_mels=N_MELS)
    assert feats.center and feats.sample_rate == 22050 and feats.hop_length == HOP
    assert saved.normalize is False and saved.stats is None and not (fused["out"] / "stats.npz").exists()
    cfg = saved.model.config
    assert (cfg.upsample_crop, cfg.affine_scale, cfg.coupling, cfg.upsample_kernel) == ("start", "exp", "affine", 1024)
    assert (cfg.n_flows, cfg.n_group, cfg.n_early_every, cfg.n_early_size) == (5, 8, 2, 2)
    info = saved.config["training"]
    assert info["source"] == "glow.WaveGlow" and info["iteration"] == 580000 and info["weight_norm"] == "kept"


def _slaney_mel_basis(sr, n_fft, n_mels, fmin, fmax):
    """librosa.filters.mel's default (htk=False, norm='slaney'), from its definition: the Slaney
    mel scale (linear below 1 kHz, logarithmic above), triangles between adjacent mel points
    over the FFT bin frequencies, each scaled to unit area (2 / bandwidth)."""
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0

    def hz_to_mel(f):
        f = np.asarray(f, dtype=np.float64)
        return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, f / f_sp)

    def mel_to_hz(m):
        return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)

    pts = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    lower = (freqs[None] - pts[:-2, None]) / (pts[1:-1] - pts[:-2])[:, None]
    upper = (pts[2:, None] - freqs[None]) / (pts[2:] - pts[1:-1])[:, None]
    return np.maximum(0, np.minimum(lower, upper)) * (2.0 / (pts[2:] - pts[:-2]))[:, None]


def test_tacotron2_front_end_matches_tacotron_stft():
    """The imported front end is Tacotron 2's TacotronSTFT.mel_spectrogram: reflect-pad n_fft/2,
    periodic Hann, |STFT|, librosa's slaney mel filters (0-8 kHz), ln(clamp(., 1e-5))."""
    feats = tacotron2_features()
    wav = 0.3 * torch.randn(22050 // 4 + 77, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = np.pad(wav.numpy(), 512, mode="reflect")
    n = np.arange(1024)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / 1024)
    frames = 1 + (len(x) - 1024) // 256
    spec = np.stack([np.abs(np.fft.rfft(window * x[t * 256: t * 256 + 1024])) for t in range(frames)], axis=1)
    basis = _slaney_mel_basis(22050, 1024, 80, 0.0, 8000.0)
    ref = np.log(np.maximum(basis @ spec, 1e-5))
    got = MelSpectrogram(feats).double()(wav).numpy()
    assert got.shape == ref.shape == (80, 1 + wav.shape[0] // 256)
    assert np.abs(got - ref).max() < 1e-4


def test_upsampler_start_crop():
    up = MelUpsampler(4, hop=8, kernel_size=32, crop="start")
    mel = torch.randn(2, 4, 5)
    full = F.conv_transpose1d(mel, up.conv.weight, up.conv.bias, stride=8)
    assert torch.allclose(up(mel), full[..., :40], atol=1e-6)
    assert up.context_frames == (3, 0)
    centred = MelUpsampler(4, hop=8, kernel_size=32)
    centred.load_state_dict(up.state_dict())
    assert torch.allclose(centred(mel), full[..., 12:52], atol=1e-6)  # the default is unchanged
    with pytest.raises(ValueError, match="crop"):
        MelUpsampler(4, hop=8, crop="end")


# --------------------------------------------------------------------------------- safety
class _Evil:
    def __init__(self, fn, arg):
        self.fn, self.arg = fn, arg

    def __reduce__(self):
        return (self.fn, (self.arg,))


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("fn", [os.system, subprocess.check_call, exec], ids=["os.system", "check_call", "exec"])
def test_code_in_the_pickle_is_refused_and_not_run(tmp_path, legacy, fn):
    marker = tmp_path / "pwned"
    arg = f"open({str(marker)!r}, 'w').close()" if fn is exec else (
        ["touch", str(marker)] if fn is subprocess.check_call else f"touch {marker}")
    ck = tmp_path / "evil.pt"
    torch.save({"model": _Evil(fn, arg), "iteration": 1}, ck, _use_new_zipfile_serialization=not legacy)
    with pytest.raises(NvidiaCheckpointError, match="refusing to load") as e:
        import_waveglow(ck, tmp_path / "out")
    assert str(ck) in str(e.value) and fn.__name__ in str(e.value)
    assert not marker.exists() and not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("legacy", [False, True])
def test_truncated_checkpoint(tmp_path, fused, legacy):
    model, fake = build_nvidia("fused")
    ck = save_like_train_py(model, fake, tmp_path / "ck.pt", legacy=legacy)
    data = ck.read_bytes()
    ck.write_bytes(data[: len(data) // 2])
    with pytest.raises(NvidiaCheckpointError, match="unreadable or truncated") as e:
        import_waveglow(ck, tmp_path / "out")
    assert str(ck) in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "out").exists()


def test_checkpoint_of_another_model(tmp_path):
    class Tacotron2(nn.Module):
        pass

    fake = types.ModuleType("model")
    Tacotron2.__module__, Tacotron2.__qualname__ = "model", "Tacotron2"
    fake.Tacotron2 = Tacotron2
    taco = Tacotron2()
    taco.embedding = nn.Embedding(10, 4)
    pickled = save_like_train_py(taco, fake, tmp_path / "taco.pt")
    expected = r"not a WaveGlow checkpoint \(the model is a pickled model.Tacotron2"
    with pytest.raises(NvidiaCheckpointError, match=expected):
        import_waveglow(pickled, tmp_path / "out")
    # Tacotron 2's train.py format: {'state_dict': ..., 'iteration', 'optimizer', 'learning_rate'}
    sd = tmp_path / "taco_sd.pt"
    torch.save({"state_dict": taco.state_dict(), "iteration": 3, "optimizer": {}, "learning_rate": 1e-3}, sd)
    with pytest.raises(NvidiaCheckpointError, match="not a WaveGlow checkpoint") as e:
        import_waveglow(sd, tmp_path / "out")
    assert str(sd) in str(e.value)
    with pytest.raises(NvidiaCheckpointError, match="no such checkpoint file"):
        import_waveglow(tmp_path / "nope.pt", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_config_is_checked_against_the_checkpoint(tmp_path, fused):
    with open(os.path.join(ROOT, "configs", "waveglow_nvidia.yaml"), encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    doc["features"] = {"preset": "tacotron2", "n_mels": N_MELS}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(doc))
    with pytest.raises(NvidiaCheckpointError) as e:
        import_waveglow(fused["ck"], tmp_path / "out", config=bad)
    msg = str(e.value)
    assert msg.startswith(f"{bad}: model does not match {fused['ck']}")
    assert "n_flows=12 (checkpoint: 5)" in msg and "wn_channels=256 (checkpoint: 16)" in msg
    assert not (tmp_path / "out").exists()
    doc["model"].update(n_flows=5, n_early_every=2, wn_layers=3, wn_channels=16, affine_scale="exp")
    doc["synthesis"] = {"sigma": 0.7, "denoise": 0.05}
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(doc))
    saved = read_vocoder_dir(import_waveglow(fused["ck"], tmp_path / "out", config=good, sigma=0.5))
    assert saved.config["synthesis"] == {"sigma": 0.5, "denoise": 0.05}
    assert saved.config["train"]["lr"] == doc["train"]["lr"]


# --------------------------------------------------------------------------------- the CLI
def test_cli_import_waveglow(tmp_path, fused, capsys):
    out = tmp_path / "voc"
    assert cli_main.main(["import-waveglow", str(fused["ck"]), str(out), "--fold-weight-norm", "--sigma", "0.8"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    saved = read_vocoder_dir(out)
    assert saved.config["synthesis"]["sigma"] == 0.8 and not saved.model.has_weight_norm()
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert cli_main.main(["import-waveglow", str(bad), str(tmp_path / "o2")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"vocoflow import-waveglow: error: {bad}: unreadable or truncated") and "\n" not in err
    assert not (tmp_path / "o2").exists()


# ----------------------------------------------------------- the rest of vocoflow on the import
def test_imported_vocoder_synthesis_paths(fused):
    voc, mel = Vocoder.from_pretrained(fused["out"]), _mel(frames=20)
    ref = reference_infer(fused["model"], mel)[0]
    scale = float(ref.abs().max())
    plain = voc.synthesize(mel[0], sigma=0.0, check=False)
    # chunked synthesis (NVIDIA's start crop gives the upsampler a one-sided context)
    chunked = voc.synthesize(mel[0], sigma=0.0, chunk_frames=6, check=False)
    assert float((chunked.double() - ref).abs().max()) < 1e-4 * scale
    # bf16 conditioners
    bf16 = voc.synthesize(mel[0], sigma=0.0, bf16=True, check=False)
    assert torch.isfinite(bf16).all() and float((bf16 - plain).abs().max()) < 0.1 * scale
    # the bias denoiser
    den = voc.synthesize(mel[0], sigma=0.0, denoise=0.1, check=False)
    assert den.shape == plain.shape and torch.isfinite(den).all() and not torch.equal(den, plain)


def test_imported_vocoder_decode_and_benchmark(tmp_path, fused, capsys):
    import soundfile as sf

    out, mel = fused["out"], _mel(frames=20)
    ref = reference_infer(fused["model"], mel)[0].numpy()
    mels = tmp_path / "mels"
    mels.mkdir()
    np.save(mels / "utt1.npy", mel[0].numpy())
    torch.save(mel[0].clone(), mels / "utt2.pt")  # how NVIDIA's mel2samp.py saves mels
    assert cli_main.main(["decode", "--no-progress", "--model", str(out), "--npy-dir", str(mels),
                          "--out-dir", str(tmp_path / "wav"), "--sigma", "0", "--no-check"]) == 0
    for utt in ("utt1", "utt2"):
        wav, sr = sf.read(tmp_path / "wav" / f"{utt}.wav")
        assert sr == 22050 and wav.shape == (20 * HOP,)
        assert np.abs(wav - np.clip(ref, -1, 1)).max() < 1e-3
    bench = tmp_path / "bench.json"  # --child: the measurement in this process (no fresh interpreter)
    assert cli_main.main(["benchmark", str(out), "--threads", "1", "--seconds", "0.1", "--matmul-size", "64",
                          "--child", str(bench)]) == 0
    result = yaml.safe_load(bench.read_text())
    assert result["samples"] > 0 and result["samples"] % HOP == 0 and result["rtf"] > 0
    capsys.readouterr()


def test_imported_vocoder_fine_tunes(tmp_path, fused):
    """``vocoflow train --init-from`` an imported directory, on a dump made with its own front end."""
    from data_fixtures import tone, write_wav
    from vocoflow.audio import preprocess, write_data_dir

    saved = read_vocoder_dir(fused["out"])
    wavs = {f"u{i}": write_wav(tmp_path / f"u{i}.wav", tone(22050, 0.5 + 0.1 * i, 200 + 50 * i, seed=i))
            for i in range(2)}
    write_data_dir(tmp_path / "data", wavs, {k: "s" for k in wavs})
    assert preprocess(tmp_path / "data", tmp_path / "dump", saved.features).n_ok == 2
    conf = {"features": saved.config["features"], "model": saved.config["model"],
            "train": {"steps": 1, "batch_size": 2, "segment_length": 2048, "lr": 1e-5, "checkpoint_every": 1,
                      "validate_every": 1, "log_every": 1}}
    (tmp_path / "ft.yaml").write_text(yaml.safe_dump(conf))
    assert cli_main.main(["train", "--config", str(tmp_path / "ft.yaml"), "--train-dump", str(tmp_path / "dump"),
                          "--out-dir", str(tmp_path / "exp"), "--init-from", str(fused["out"]), "--cpu",
                          "--no-progress"]) == 0
    tuned = read_vocoder_dir(tmp_path / "exp" / "model")
    assert tuned.config["training"]["init_from"] == str(fused["out"].resolve())
    assert tuned.model.config == saved.model.config
    before, after = saved.model.state_dict(), tuned.model.state_dict()
    assert all(torch.isfinite(v).all() for v in after.values())
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the weights moved
