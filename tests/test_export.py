"""``vocoflow export`` (TorchScript / ONNX synthesis graphs) and float16 synthesis."""

from __future__ import annotations

import importlib
import json
import math
import os
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from flowcheck import randomize
from vocoflow.flows import Invertible1x1Conv
from vocoflow.nets.excitation import upsample_f0
from vocoflow.vocoders import VocoderError, build_model, load, load_config, save_vocoder, snr_db
from vocoflow.vocoders.export import export_vocoder, load_exported, noise_shape

cli_main = importlib.import_module("vocoflow.cli.main")
CONFIGS = Path(__file__).resolve().parent.parent / "configs"
N_MELS, HOP, MEAN, SCALE = 16, 256, -6.0, 2.0


def _saved(path, config="waveglow_debug.yaml", seed=0, **model):
    cfg = load_config(CONFIGS / config)
    cfg["features"]["n_mels"] = N_MELS
    cfg["model"].update(model)
    cfg = load_config(cfg)
    torch.manual_seed(seed)
    m = randomize(build_model(cfg), std=0.05, seed=seed)
    stats = {"mean": np.full(N_MELS, MEAN), "scale": np.full(N_MELS, SCALE)}
    return save_vocoder(m, cfg, path, stats=stats)


def _inputs(frames, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    mel = (MEAN + SCALE * torch.randn(batch, N_MELS, frames, generator=g)).clamp_min(math.log(1e-5))
    return mel, torch.randn(batch, frames * HOP, generator=g)


def _f0(frames, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (90 + 120 * torch.rand(batch, frames, generator=g)) * (torch.rand(batch, frames, generator=g) < 0.6)


@pytest.fixture(scope="module")
def waveglow(tmp_path_factory):
    """A tiny normalising WaveGlow with a learned (transposed-convolution) upsampler, exported
    to both formats."""
    d = _saved(tmp_path_factory.mktemp("wg") / "voc", upsample="transpose", lu=False)
    specs = {fmt: export_vocoder(d, fmt=fmt) for fmt in ("torchscript", "onnx")}
    return d, specs


# lengths other than the traced (11) and self-checked (7, 23) ones
@pytest.mark.parametrize("frames", [5, 31])
def test_onnx_run_by_onnxruntime_matches_pytorch(waveglow, frames):
    d, specs = waveglow
    path = specs["onnx"]["output"]
    assert path == d / "synthesis.onnx"
    sess = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    mel, noise = _inputs(frames, seed=frames)
    assert noise.shape == noise_shape(frames, HOP, batch=2)
    (audio,) = sess.run(None, {"mel": mel.numpy(), "noise": noise.numpy()})
    ref = load(d).synthesize(mel, noise=noise)
    assert audio.shape == (2, frames * HOP)
    assert snr_db(ref, torch.from_numpy(audio)) >= 60


@pytest.mark.parametrize("frames", [5, 31])
def test_torchscript_matches_pytorch(waveglow, frames):
    d, specs = waveglow
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice
        module = torch.jit.load(str(specs["torchscript"]["output"]))
    mel, noise = _inputs(frames, batch=3, seed=frames)
    with torch.no_grad(), torch.jit.optimized_execution(False):
        audio = module(mel, noise)
    ref = load(d).synthesize(mel, noise=noise)
    assert audio.shape == (3, frames * HOP)
    assert snr_db(ref, audio) >= 60


def test_json_describes_the_graph(waveglow):
    d, specs = waveglow
    doc = json.loads((d / "synthesis.onnx.json").read_text())
    assert doc["format"] == "vocoflow-export" and doc["export_format"] == "onnx"
    assert doc["file"] == "synthesis.onnx" and doc["sample_rate"] == 16000 and doc["hop_length"] == HOP
    assert doc["sigma"] == 0.6 and doc["normalized_in_graph"] is True
    assert [(i["name"], i["shape"]) for i in doc["inputs"]] == [
        ("mel", ["batch", N_MELS, "frames"]), ("noise", ["batch", f"frames * {HOP}"])]
    assert [o["name"] for o in doc["outputs"]] == ["audio"]
    assert [c["frames"] for c in doc["verified"]] == [7, 23]
    assert all(c["snr_db"] >= 60 for c in doc["verified"])
    # the ONNX graph's own inputs: same names, batch and length dynamic, n_mels fixed
    graph = onnx.load(str(d / "synthesis.onnx")).graph
    dims = {i.name: [x.dim_param or x.dim_value for x in i.type.tensor_type.shape.dim] for i in graph.input}
    assert dims == {"mel": ["batch", N_MELS, "frames"], "noise": ["batch", "samples"]}
    ts = json.loads((d / "synthesis.torchscript.pt.json").read_text())
    assert ts["export_format"] == "torchscript" and ts["opset"] is None


def test_load_exported_runs_one_utterance(waveglow):
    d, specs = waveglow
    mel, noise = _inputs(9, batch=1, seed=3)
    ref = load(d).synthesize(mel[0], noise=noise[0])
    for fmt in ("onnx", "torchscript"):
        runner = load_exported(specs[fmt]["output"])
        assert runner.noise_shape(9) == (1, 9 * HOP) and runner.sample_rate == 16000
        audio = runner(mel[0], noise[0])
        assert audio.shape == (1, 9 * HOP) and snr_db(ref, torch.from_numpy(audio[0])) >= 60


def test_excitation_and_prior_export_fully(tmp_path):
    d = _saved(tmp_path / "sf", excitation_harmonics=4, pitch_channels=8, pitch_layers=2,
               prior="mel", cond_proj=16)
    voc = load(d)
    # (the export's own check is off: this test does it, at another length)
    predicted = export_vocoder(d, tmp_path / "pred.onnx", "onnx", verify=False)
    given = export_vocoder(d, tmp_path / "f0.onnx", "onnx", f0_input=True, verify=False)
    assert predicted["excitation"] == "predicted from the mel" and given["excitation"] == "f0 input"
    assert [i["name"] for i in given["inputs"]] == ["mel", "noise", "f0"]
    mel, noise = _inputs(17, seed=5)
    f0 = _f0(17, seed=5)
    run = onnxruntime.InferenceSession(str(tmp_path / "pred.onnx")).run
    (a,) = run(None, {"mel": mel.numpy(), "noise": noise.numpy()})
    assert snr_db(voc.synthesize(mel, noise=noise), torch.from_numpy(a)) >= 60
    run = onnxruntime.InferenceSession(str(tmp_path / "f0.onnx")).run
    (b,) = run(None, {"mel": mel.numpy(), "noise": noise.numpy(), "f0": f0.numpy()})
    assert snr_db(voc.synthesize(mel, noise=noise, f0=f0), torch.from_numpy(b)) >= 60
    # the F0 input matters (the check above is not comparing two excitation-free graphs)
    assert snr_db(torch.from_numpy(a), torch.from_numpy(b)) < 40


def test_mel_source_is_refused_with_a_reason(tmp_path):
    d = _saved(tmp_path / "src", excitation_harmonics=4, pitch_channels=8, pitch_layers=2,
               cond_proj=16, source="mel", source_refine=1)
    for fmt in ("onnx", "torchscript"):
        with pytest.raises(VocoderError, match="source: mel cannot be exported"):
            export_vocoder(d, tmp_path / f"x.{fmt}", fmt)
        assert not (tmp_path / f"x.{fmt}").exists()


def test_student_with_an_excitation_exports_and_with_a_source_is_refused(tmp_path):
    student = {"type": "iaf_student", "flow_layers": [2, 2], "channels": 8,
               "excitation_harmonics": 4, "pitch_channels": 8, "pitch_layers": 2}

    def saved(name, **model):
        cfg = load_config(CONFIGS / "waveglow_debug.yaml")
        cfg["features"]["n_mels"] = N_MELS
        cfg["model"] = {**student, **model}
        cfg = load_config(cfg)
        m = randomize(build_model(cfg), std=0.05, seed=0)
        stats = {"mean": np.full(N_MELS, MEAN), "scale": np.full(N_MELS, SCALE)}
        return save_vocoder(m, cfg, tmp_path / name, stats=stats)

    d = saved("st")
    export_vocoder(d, tmp_path / "st.onnx", "onnx", f0_input=True, verify=False)
    mel, noise = _inputs(13, seed=2)
    f0 = _f0(13, seed=2)
    run = onnxruntime.InferenceSession(str(tmp_path / "st.onnx")).run
    (a,) = run(None, {"mel": mel.numpy(), "noise": noise.numpy(), "f0": f0.numpy()})
    assert snr_db(load(d).synthesize(mel, noise=noise, f0=f0), torch.from_numpy(a)) >= 60
    d2 = saved("st_src", source="mel", source_refine=1)
    with pytest.raises(VocoderError, match="source: mel cannot be exported"):
        export_vocoder(d2, tmp_path / "x.onnx", "onnx")


def test_parallel_student_exports_and_the_others_are_refused(tmp_path):
    d = _saved(tmp_path / "student", "distill_debug.yaml", upsample="transpose")
    export_vocoder(d, fmt="onnx", sigma=0.8, verify=False)
    mel, noise = _inputs(13, seed=2)
    (a,) = onnxruntime.InferenceSession(str(d / "synthesis.onnx")).run(
        None, {"mel": mel.numpy(), "noise": noise.numpy()})
    assert snr_db(load(d).synthesize(mel, noise=noise, sigma=0.8), torch.from_numpy(a)) >= 60
    refused = [
        (_saved(tmp_path / "logistic", "distill_debug.yaml", noise="logistic"), "onnx",
         "logistic noise cannot be exported to ONNX"),
        (_saved(tmp_path / "mol", coupling="mixlogistic"), "torchscript", "mixlogistic couplings"),
        (_saved(tmp_path / "teacher", "wavenet_teacher_debug.yaml"), "onnx", "sampling is sequential"),
    ]
    for path, fmt, why in refused:
        with pytest.raises(VocoderError, match=why):
            export_vocoder(path, fmt=fmt)
        assert not list(path.glob("synthesis*"))


def test_failed_check_leaves_nothing(tmp_path):
    d = _saved(tmp_path / "voc")
    with pytest.raises(VocoderError, match=r"does not reproduce PyTorch .* nothing written"):
        export_vocoder(d, fmt="torchscript", min_snr_db=1000.0)
    assert sorted(os.listdir(d)) == ["config.yaml", "model.pt", "stats.npz"]


# ------------------------------------------------------------------------------------ the CLI
def run(*argv):
    return cli_main.main(["export", *map(str, argv)])


def test_cli_writes_and_refuses_bad_input(tmp_path, capsys):
    d = _saved(tmp_path / "voc")
    out = tmp_path / "graph.onnx"
    assert run(d, "--format", "onnx", "-o", out) == 0
    said = capsys.readouterr().out
    assert f"wrote {out} (onnx)" in said and "matches PyTorch" in said
    assert out.is_file() and (tmp_path / "graph.onnx.json").is_file()
    before = out.read_bytes()

    def fails(*argv, names):
        assert run(*argv) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("vocoflow export: error: ")
        assert names in err, err
        return err

    assert "--overwrite" in fails(d, "--format", "onnx", "-o", out, names=str(out))
    assert out.read_bytes() == before
    fails(tmp_path, "--format", "onnx", names=f"{tmp_path}: not a vocoflow vocoder directory")
    fails(d, "--format", "tflite", names="tflite")
    fails(d, "--format", "onnx", "-o", tmp_path / "no" / "x.onnx", names=str(tmp_path / "no"))
    fails(d, "--format", "onnx", "--f0-input", names=f"{d}: f0 input")
    assert run(d, "--format", "onnx", "-o", out, "--overwrite", "--sigma", "0.3", "--no-verify") == 0
    doc = json.loads((tmp_path / "graph.onnx.json").read_text())
    assert doc["sigma"] == 0.3 and "verified" not in doc and out.read_bytes() != before
    assert sorted(os.listdir(tmp_path)) == ["graph.onnx", "graph.onnx.json", "voc"]


# ------------------------------------------------------------------------------------ float16
def test_float16_synthesis_is_finite_and_close_to_float32(tmp_path):
    """``load(dtype=float16)`` used to fail in ``slogdet`` (no half kernel) in the 1x1 convs."""
    d = _saved(tmp_path / "voc", lu=False, upsample="transpose")
    mel, noise = _inputs(20, batch=1, seed=4)
    ref = load(d).synthesize(mel[0], noise=noise[0])
    voc = load(d, dtype=torch.float16)
    assert {p.dtype for p in voc.model.parameters()} == {torch.float16}
    wav = voc.synthesize(mel[0], noise=noise[0])
    assert wav.dtype == torch.float32 and bool(torch.isfinite(wav).all())
    assert snr_db(ref, wav) >= 45  # about 60 dB for this model


def test_1x1_conv_in_float16_and_its_cache():
    conv = Invertible1x1Conv(6, seed=0)
    w = conv.weight.detach().double()
    want = torch.linalg.slogdet(w)[1]
    half = Invertible1x1Conv(6, seed=0).half().eval()
    x = torch.randn(2, 6, 10).half()
    with torch.no_grad():
        z, ld = half(x)
        back, ld_inv = half.inverse(z)
        assert torch.allclose(back.float(), x.float(), atol=2e-2)
        assert math.isclose(float(half.log_abs_det()), float(want), abs_tol=1e-2)
        # cached in eval mode, recomputed (not stale) once the weights change
        half.weight.mul_(2.0)
        assert math.isclose(float(half.log_abs_det()), float(want) + 6 * math.log(2), abs_tol=1e-2)
        assert torch.allclose(half.inverse_matrix().float() * 2, torch.linalg.inv(w).float(), atol=1e-2)


def test_f0_fill_without_cummax_matches_nearest_voiced_neighbours():
    """upsample_f0 fills unvoiced frames from the nearest voiced frame (previous, else next)
    by scatter/gather (ONNX has no running maximum); check against a plain loop."""
    g = torch.Generator().manual_seed(0)
    f0 = (100 + 100 * torch.rand(3, 40, generator=g)) * (torch.rand(3, 40, generator=g) < 0.3)
    f0[1] = 0.0
    f0[2, :5] = 0.0
    hop = 4
    f, v = upsample_f0(f0, hop)
    for b in range(3):
        voiced = [t for t in range(40) if f0[b, t] > 0]
        filled = []
        for t in range(40):
            before = [s for s in voiced if s <= t]
            after = [s for s in voiced if s >= t]
            filled.append(float(f0[b, before[-1] if before else after[0]]) if voiced else 0.0)
        filled = torch.tensor(filled)
        pos = ((torch.arange(40 * hop) + 0.5) / hop - 0.5).clamp(0, 39)
        lo = pos.floor().long()
        hi = (lo + 1).clamp(max=39)
        want = (filled[lo] * (1 - (pos - lo)) + filled[hi] * (pos - lo)) * v[b]
        assert torch.allclose(f[b], want, atol=1e-4)
