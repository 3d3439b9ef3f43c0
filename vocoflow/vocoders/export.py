"""Export of a vocoder's synthesis as a TorchScript or ONNX graph, and a runner for the result.

The exported graph computes exactly what :meth:`Vocoder.synthesize(mel, noise=noise,
denoise=0) <vocoflow.vocoders.Vocoder.synthesize>` computes, with the noise as an *input* so
that a result is reproducible (and comparable with PyTorch):

==========  ==========================  =====================================================
name        shape                       meaning
==========  ==========================  =====================================================
``mel``     ``(batch, n_mels, frames)`` raw log-mel as :meth:`Vocoder.mel` makes it (float32);
                                        the feature normalisation of a model trained on
                                        normalised features is inside the graph
``noise``   ``(batch, frames * hop)``   unit normal noise, one value per output sample
                                        (:func:`noise_shape`); the graph multiplies it by the
                                        ``sigma`` fixed at export
``f0``      ``(batch, frames)``         only with ``f0_input=True`` (vocoders with an
                                        excitation): F0 in Hz per frame, 0 = unvoiced
``audio``   ``(batch, frames * hop)``   the output waveform (float32)
==========  ==========================  =====================================================

``batch`` and ``frames`` are dynamic. A vocoder with an excitation (``excitation_harmonics``)
exports fully: by default its pitch predictor and harmonic excitation are in the graph (the
excitation is a deterministic function of F0, so it needs no noise of its own); with
``f0_input=True`` the graph takes F0 instead (e.g. from a TTS front end). ``prior: mel`` is
in the graph as well. IAF students export too (their synthesis is one parallel pass).

Not exportable (refused with a message): WaveGlow with ``mixlogistic`` or ``residual``
couplings (their inverses iterate until a data-dependent tolerance is met) or with ``source: mel``
(its synthesiser's complex STFT and overlap-add are not exported), the autoregressive
WaveNet teacher (sequential sampling) and, to ONNX only, students with logistic noise (ONNX has
no normal log-CDF for the quantile transform). Not in the graph: the bias denoiser (ONNX has no
inverse STFT) and the raw/normalised input check of :meth:`Vocoder.prepare`.

Next to the exported file ``OUT`` a small JSON file ``OUT.json`` names the inputs and outputs
with their shapes, the sample rate, hop, sigma and the result of the export's own check: after
writing, the graph is run at two input lengths other than the one it was traced at and
compared with PyTorch (``verify``; the SNRs are recorded, below ``min_snr_db`` the export
fails and nothing is left behind). :func:`load_exported` reads both and runs the graph
(onnxruntime for ONNX).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vocoflow.atomic import atomic_write_text, chmod_like_umask, move_file, tmp_path_for

from .checkpoint import VocoderError
from .synthesis import snr_db

__all__ = ["FORMATS", "EXPORT_FORMAT", "SynthesisGraph", "noise_shape", "export_problem",
           "export_vocoder", "default_output", "load_exported", "ExportedVocoder"]

FORMATS = ("torchscript", "onnx")
#: the ``format`` field of the JSON file written next to an exported graph
EXPORT_FORMAT = "vocoflow-export"
EXPORT_VERSION = 1
_SUFFIX = {"torchscript": ".torchscript.pt", "onnx": ".onnx"}
#: frames of the example input the graph is traced with, and of the two verification inputs
TRACE_FRAMES = 11
VERIFY_FRAMES = (7, 23)


def noise_shape(frames: int, hop_length: int, batch: int = 1) -> tuple[int, int]:
    """Shape of the ``noise`` input for ``frames`` mel frames: ``(batch, frames * hop)``.

    >>> noise_shape(100, 256, batch=2)
    (2, 25600)
    """
    return (int(batch), int(frames) * int(hop_length))


def default_output(directory, fmt: str) -> Path:
    """``DIR/synthesis.onnx`` or ``DIR/synthesis.torchscript.pt``."""
    return Path(directory) / f"synthesis{_SUFFIX[fmt]}"


def spec_path(output) -> Path:
    """The JSON file next to an exported graph: ``OUT.json``."""
    output = Path(output)
    return output.with_name(output.name + ".json")


class SynthesisGraph(nn.Module):
    """``(mel, noise[, f0]) -> audio``: a vocoder's synthesis as one traceable module (the
    model plus the feature normalisation and a fixed ``sigma``); see the module docstring."""

    def __init__(self, model: nn.Module, sigma: float, mean=None, scale=None, f0_input: bool = False):
        super().__init__()
        self.model = model
        self.sigma = float(sigma)
        self.f0_input = bool(f0_input)
        self.normalize = mean is not None
        if self.normalize:
            self.register_buffer("mean", torch.as_tensor(np.asarray(mean), dtype=torch.float32)[:, None])
            self.register_buffer("scale", torch.as_tensor(np.asarray(scale), dtype=torch.float32)[:, None])

    def forward(self, mel: torch.Tensor, noise: torch.Tensor, f0: torch.Tensor | None = None):
        x = (mel - self.mean) / self.scale if self.normalize else mel
        kw = {"f0": f0} if self.f0_input else {}
        return self.model.infer(x, sigma=self.sigma, noise=noise, **kw)


def export_problem(model: nn.Module, fmt: str) -> str | None:
    """Why ``model``'s synthesis cannot be exported to ``fmt`` (``None``: it can)."""
    from .student import IAFStudent
    from .waveglow import WaveGlow

    if isinstance(model, WaveGlow):
        coupling = model.config.coupling
        if coupling in ("mixlogistic", "residual"):
            how = "bisection" if coupling == "mixlogistic" else "fixed-point iteration"
            return (f"WaveGlow with {coupling} couplings cannot be exported: their inverse is a "
                    f"{how} that runs until a data-dependent tolerance is met")
        if model.config.source != "none":
            return ("WaveGlow with source: mel cannot be exported: its mel source synthesises with "
                    "complex STFTs and overlap-add (torch.polar, irfft, fold), which neither "
                    "TorchScript tracing nor ONNX export here reproduces; synthesise it with "
                    "PyTorch (vocoflow decode or the Python API)")
        if model.config.base != "normal":
            return (f"WaveGlow with base {model.config.base} cannot be exported: its noise "
                    f"transform (inverse CDF) is a bisection with data-dependent stopping")
        return None
    if isinstance(model, IAFStudent):
        if model.config.source != "none":
            return ("a student with source: mel cannot be exported: its mel source synthesises "
                    "with complex STFTs and overlap-add, which the export does not reproduce")
        if fmt == "onnx" and model.config.noise == "logistic":
            return ("a student with logistic noise cannot be exported to ONNX (its noise transform "
                    "needs the normal log-CDF, which ONNX lacks); export it to torchscript")
        return None
    return (f"{type(model).__name__} cannot be exported: its sampling is sequential (sample by "
            f"sample); distill it into an IAF student and export that")


def _example(voc, frames: int, batch: int, seed: int, f0_input: bool):
    """A plausible raw log-mel (around the statistics, never below the log floor), unit noise
    and, for ``f0_input``, an F0 track with voiced and unvoiced frames."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, voc.n_mels, frames, generator=g)
    if voc.stats_mean is not None:
        mel = (torch.as_tensor(voc.stats_mean, dtype=torch.float32)[:, None]
               + torch.as_tensor(voc.stats_scale, dtype=torch.float32)[:, None] * z)
    else:
        mel = z
    if voc.features.log != "none":
        mel = mel.clamp_min(voc.features.log_floor)
    inputs = [mel, torch.randn(noise_shape(frames, voc.hop_length, batch), generator=g)]
    if f0_input:
        f0 = 100 + 100 * torch.rand(batch, frames, generator=g)
        inputs.append(f0 * (torch.rand(batch, frames, generator=g) < 0.7))
    return inputs


def _spec(voc, fmt: str, output: Path, sigma: float, f0_input: bool, opset: int | None) -> dict:
    hop, n_mels = voc.hop_length, voc.n_mels
    samples = f"frames * {hop}"
    inputs = [
        {"name": "mel", "shape": ["batch", n_mels, "frames"], "dtype": "float32",
         "meaning": "raw log-mel (as Vocoder.mel makes it)"
                    + ("; normalised inside the graph" if voc.normalize else "")},
        {"name": "noise", "shape": ["batch", samples], "dtype": "float32",
         "meaning": "unit normal noise, one value per output sample (multiplied by sigma)"},
    ]
    if f0_input:
        inputs.append({"name": "f0", "shape": ["batch", "frames"], "dtype": "float32",
                       "meaning": "F0 in Hz per frame, 0 = unvoiced"})
    model = voc.model
    return {
        "format": EXPORT_FORMAT, "version": EXPORT_VERSION, "export_format": fmt,
        "file": output.name, "vocoder": str(voc.directory.resolve()) if voc.directory else None,
        "model_type": getattr(model.config, "type_name", type(model).__name__),
        "sample_rate": voc.sample_rate, "hop_length": hop, "n_mels": n_mels, "sigma": sigma,
        "normalized_in_graph": bool(voc.normalize),
        "excitation": ("f0 input" if f0_input else "predicted from the mel")
        if voc.uses_excitation else None,
        "denoise_in_graph": False,
        "saved_denoise": float(voc.synthesis_defaults.get("denoise", 0.0)),
        "inputs": inputs,
        "outputs": [{"name": "audio", "shape": ["batch", samples], "dtype": "float32"}],
        "dynamic": ["batch", "frames"],
        "opset": opset, "torch": torch.__version__,
    }


@contextlib.contextmanager
def _quiet():
    """Silence what tracing says about every model: the shape checks read as Python booleans
    (constants of the trace, true for any valid input; the export's own check at other lengths
    is what vouches for the graph), torch.jit's deprecation notices and ONNX constant folding
    notes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message="Constant folding")
        yield


def _trace(graph: SynthesisGraph, example: list) -> torch.jit.ScriptModule:
    with _quiet():
        return torch.jit.trace(graph, tuple(example), check_trace=False)


def _write_onnx(graph: SynthesisGraph, example: list, path: str, opset: int) -> None:
    names = ["mel", "noise", "f0"][: len(example)]
    axes = {"mel": {0: "batch", 2: "frames"}, "noise": {0: "batch", 1: "samples"},
            "f0": {0: "batch", 1: "frames"}, "audio": {0: "batch", 1: "samples"}}
    with _quiet():
        torch.onnx.export(graph, tuple(example), path, input_names=names, output_names=["audio"],
                          dynamic_axes={k: v for k, v in axes.items() if k in names + ["audio"]},
                          opset_version=opset, dynamo=False)


def export_vocoder(vocoder, output=None, fmt: str = "onnx", sigma: float | None = None,
                   f0_input: bool = False, overwrite: bool = False, opset: int = 17,
                   verify: bool = True, min_snr_db: float = 60.0) -> dict:
    """Export the synthesis of ``vocoder`` (a :class:`Vocoder` or a vocoder directory) to
    ``output`` (default :func:`default_output`) as ``fmt`` (``torchscript`` or ``onnx``), and
    write ``output.json``; returns that JSON document, plus ``output`` (the path).

    ``sigma`` defaults to the vocoder's saved one. Raises :class:`VocoderError` for an unknown
    format, a model that cannot be exported, an existing output without ``overwrite``, or a
    graph that does not reproduce PyTorch (``verify``: SNR below ``min_snr_db`` at one of two
    input lengths). The files appear complete or not at all.
    """
    from .api import Vocoder

    if fmt not in FORMATS:
        raise VocoderError(f"unknown export format {fmt!r} (choose from {', '.join(FORMATS)})")
    voc = vocoder if isinstance(vocoder, Vocoder) else Vocoder.from_pretrained(vocoder)
    if voc.dtype != torch.float32 or voc.device.type != "cpu":
        raise VocoderError(f"{voc._where()}: export a float32 vocoder on the CPU (this one is "
                           f"{voc.dtype} on {voc.device})")
    problem = export_problem(voc.model, fmt)
    if problem is not None:
        raise VocoderError(f"{voc._where()}: {problem}")
    if f0_input and not voc.uses_excitation:
        raise VocoderError(f"{voc._where()}: f0 input asked for, but this vocoder takes no F0 "
                           f"(no excitation)")
    if voc.directory is None and output is None:
        raise VocoderError("give an output path (the vocoder has no directory)")
    output = Path(output) if output is not None else default_output(voc.directory, fmt)
    spec_file = spec_path(output)
    if not overwrite:
        for p in (output, spec_file):
            if os.path.lexists(p):
                raise VocoderError(f"{p}: already exists (overwrite it with --overwrite)")
    if not output.parent.is_dir():
        raise VocoderError(f"{output.parent}: no such directory")
    sigma = float(voc.synthesis_defaults["sigma"] if sigma is None else sigma)
    graph = SynthesisGraph(voc.model, sigma, voc.stats_mean if voc.normalize else None,
                           voc.stats_scale if voc.normalize else None, f0_input).eval()
    example = _example(voc, TRACE_FRAMES, 2, 0, f0_input)
    spec = _spec(voc, fmt, output, sigma, f0_input, opset if fmt == "onnx" else None)
    tmp = tmp_path_for(output)
    try:
        with torch.no_grad():
            graph(*example)  # fills the caches (inverse 1x1 matrices): constants of the graph
            if fmt == "torchscript":
                traced = _trace(graph, example)
                with _quiet():
                    torch.jit.save(traced, tmp)
            else:
                _write_onnx(graph, example, tmp, opset)
        if verify:
            runner = ExportedVocoder(tmp, spec)
            checks = []
            for k, frames in enumerate(VERIFY_FRAMES):
                inputs = _example(voc, frames, 1, 1 + k, f0_input)
                ref = voc.synthesize(inputs[0], noise=inputs[1], sigma=sigma, denoise=0.0,
                                     check=False, f0=inputs[2] if f0_input else None)
                got = runner(*inputs)
                snr = snr_db(ref, torch.as_tensor(got))
                checks.append({"frames": frames, "snr_db": round(snr, 2) if math.isfinite(snr) else "inf"})
                if not snr >= min_snr_db:
                    raise VocoderError(f"{output}: the exported graph does not reproduce PyTorch "
                                       f"synthesis ({snr:.1f} dB SNR at {frames} frames, below "
                                       f"{min_snr_db:g} dB); nothing written")
            spec["verified"] = checks
        atomic_write_text(spec_file, json.dumps(spec, indent=2) + "\n")
        chmod_like_umask(tmp)
        move_file(tmp, output)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return {**spec, "output": output}


def load_exported(path) -> "ExportedVocoder":
    """Load an exported graph with its JSON file (see :class:`ExportedVocoder`)."""
    path = Path(path)
    sp = spec_path(path)
    if not path.is_file():
        raise VocoderError(f"{path}: no such exported graph")
    try:
        spec = json.loads(sp.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise VocoderError(f"{sp}: missing (the JSON file written next to an exported graph)") from None
    except (OSError, ValueError) as e:
        raise VocoderError(f"{sp}: unreadable ({e})") from None
    if not isinstance(spec, dict) or spec.get("format") != EXPORT_FORMAT:
        raise VocoderError(f"{sp}: not a vocoflow export description")
    if spec.get("export_format") not in FORMATS:
        raise VocoderError(f"{sp}: unknown export_format {spec.get('export_format')!r}")
    return ExportedVocoder(path, spec)


class ExportedVocoder:
    """An exported synthesis graph: ``runner(mel, noise[, f0]) -> audio`` (numpy float32
    ``(batch, frames * hop)``; inputs torch or numpy, ``(n_mels, frames)`` mels get a batch
    axis). ONNX graphs run with onnxruntime on the CPU, TorchScript ones with ``torch.jit``."""

    def __init__(self, path, spec: dict):
        self.path = Path(path)
        self.spec = spec
        self.names = [i["name"] for i in spec["inputs"]]
        if spec["export_format"] == "onnx":
            import onnxruntime

            opts = onnxruntime.SessionOptions()
            threads = torch.get_num_threads()
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
            self._session = onnxruntime.InferenceSession(str(self.path), opts,
                                                         providers=["CPUExecutionProvider"])
            self._module = None
        else:
            self._session = None
            with _quiet():
                self._module = torch.jit.load(str(self.path), map_location="cpu")

    @property
    def hop_length(self) -> int:
        return int(self.spec["hop_length"])

    @property
    def sample_rate(self) -> int:
        return int(self.spec["sample_rate"])

    def noise_shape(self, frames: int, batch: int = 1) -> tuple[int, int]:
        return noise_shape(frames, self.hop_length, batch)

    def __call__(self, mel, noise, f0=None) -> np.ndarray:
        arrays = [mel, noise] + ([] if f0 is None else [f0])
        if len(arrays) != len(self.names):
            raise VocoderError(f"{self.path}: the graph takes {', '.join(self.names)}")
        arrays = [np.ascontiguousarray(np.asarray(a.detach().cpu() if isinstance(a, torch.Tensor) else a,
                                                  dtype=np.float32)) for a in arrays]
        if arrays[0].ndim == 2:  # one utterance: give every input its batch axis
            arrays = [a if a.ndim == nd else a[None] for a, nd in zip(arrays, (3, 2, 2))]
        if self._session is not None:
            return self._session.run(["audio"], dict(zip(self.names, arrays)))[0]
        # without the profiling executor's per-shape optimisation (seconds for each new input
        # shape on a CPU, for no measurable gain on these convolution-bound graphs)
        with torch.no_grad(), torch.jit.optimized_execution(False):
            return self._module(*[torch.from_numpy(a) for a in arrays]).numpy()
