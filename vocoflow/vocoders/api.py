"""The :class:`Vocoder` synthesis API over a saved vocoder directory, and :func:`load`.

``vocoflow.load(DIR)`` reads a directory written by :func:`~vocoflow.vocoders.save_vocoder`
(layout in :mod:`vocoflow.vocoders.checkpoint`). When the model was trained on normalised
features (``normalize: true``) the API takes raw log-mels and normalises them itself (or takes
normalised ones with ``normalized=True``).
"""

from __future__ import annotations

import functools
import logging
import math
import zlib
from pathlib import Path

import numpy as np
import torch

from vocoflow.audio import MelConfig, MelSpectrogram

from .checkpoint import VocoderError, read_vocoder_dir, stats_arrays
from .config import DEFAULT_SYNTHESIS
from .synthesis import Denoiser, chunked_infer, looks_normalized
from .waveglow import bf16_conditioners

__all__ = ["Vocoder", "load", "noise_for", "cpu_has_amx", "log_base_mismatch"]

log = logging.getLogger("vocoflow.vocoders")


@functools.lru_cache(maxsize=1)
def cpu_has_amx() -> bool:
    """Whether the CPU advertises AMX tiles for bfloat16 (``amx_bf16`` in /proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return any("amx_bf16" in line for line in f if line.startswith("flags"))
    except OSError:
        return False


def _inference(model):
    """The model's inference context (``torch.inference_mode`` unless it says otherwise)."""
    ctx = getattr(model, "inference_context", None)
    return ctx() if ctx is not None else torch.inference_mode()


def load(directory, device="cpu", dtype: torch.dtype = torch.float32) -> "Vocoder":
    """Load a saved vocoder directory (see :class:`Vocoder`)."""
    return Vocoder.from_pretrained(directory, device=device, dtype=dtype)


def noise_for(utt_id: str, seed: int, shape, dtype=torch.float32) -> torch.Tensor:
    """Unit normal noise that depends only on ``(seed, utt_id)``: the same utterance gets the
    same noise whatever batch it is decoded in."""
    g = torch.Generator().manual_seed((int(seed) * 1000003 + zlib.crc32(utt_id.encode())) % 2**63)
    return torch.randn(shape, generator=g, dtype=dtype)


#: the largest peak :meth:`Vocoder.mel` accepts in float samples (audio is in [-1, 1]; a little
#: overshoot from resampling or synthesis passes, int16-scaled floats do not)
MAX_FLOAT_PEAK = 2.0


def _check_samples(x: torch.Tensor) -> None:
    """Refuse waveforms that are not float samples in [-1, 1] (see :meth:`Vocoder.mel`)."""
    if x.dtype == torch.bool or x.is_complex():
        raise VocoderError(f"mel(): waveform of dtype {x.dtype}; expected float samples in [-1, 1]")
    if not x.is_floating_point():
        peak = int(x.abs().max()) if x.numel() else 0
        hint = " (divide int16 PCM by 32768)" if x.dtype == torch.int16 else ""
        raise VocoderError(f"mel(): waveform of integer dtype {str(x.dtype).replace('torch.', '')} "
                           f"(peak {peak}); expected float samples in [-1, 1]{hint}")
    if x.numel() == 0:
        return
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        raise VocoderError(f"mel(): waveform has NaN or infinite samples ({int((~finite).sum())} "
                           f"of {x.numel()})")
    peak = float(x.abs().max())
    if peak > MAX_FLOAT_PEAK:
        hint = " (it looks like int16-scaled audio: divide by 32768)" if peak > 256 else ""
        raise VocoderError(f"mel(): float waveform with peak {peak:.4g}; expected samples in "
                           f"[-1, 1]{hint}")


def _check_knob(name: str, value) -> float:
    """``sigma``/``denoise`` as a finite float >= 0, else :class:`VocoderError`."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise VocoderError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v < 0:
        raise VocoderError(f"{name} must be finite and >= 0, got {value!r}")
    return v


_LN10 = math.log(10.0)
_BASE_NAMES = {"ln": "natural-log (ln)", "log10": "log10"}


def _log_of(base: str, value: float) -> float:
    return math.log(value) if base == "ln" else math.log10(value)


def _power_of_ten_floor(v: float, base: str) -> int | None:
    """``k`` when ``v`` is ``log_base(10 ** -k)`` for an integer ``k`` in 1..12 (a clamp floor)."""
    k = -v if base == "log10" else -v / _LN10
    kr = round(k)
    if 1 <= kr <= 12 and abs(v - _log_of(base, 10.0 ** -kr)) <= 1e-3:
        return int(kr)
    return None


def log_base_mismatch(mel: np.ndarray, features: MelConfig, mean: np.ndarray | None = None,
                      scale: np.ndarray | None = None) -> tuple[str | None, str]:
    """Whether one raw mel ``(n_mels, frames)`` was taken in the *other* log base than
    ``features.log`` (log10 for an ln model, ln for a log10 model).

    Returns ``(base, reason)``: ``base`` is the other base's name when the evidence says so,
    else ``None``. The rules, in order (``r`` converts other-base values to the model's base:
    ``ln(10)`` or ``1 / ln(10)``):

    1. The floor: raw log-mels of audio with digital silence take their minimum value many
       times (the clamp). When that minimum (repeated in 0.5% to 99% of the entries) is the
       model's own floor, the base is right. When it is ``log(10 ** -k)`` in the other base
       for an integer ``k`` in 1..12 (e.g. -5.000 = log10(1e-5), -11.513 = ln(1e-5)) and not
       in the model's base, the mel is in the other base.
    2. With statistics: the per-bin means ``m`` against the training mean/scale as given
       (``d_raw``), read in the other base (``d_other``, of ``m * r``) and as normalised
       (``d_norm = rms(m)``); the other base wins when it is decisive: ``d_other`` is the
       smallest, and the next is at least 1.0 and at least 3 times ``d_other`` (the two bases
       differ by a factor 2.3, so a mel in the other base is many training std away as given).
    3. Without statistics: values more than 0.5 below the model's floor are impossible for a
       raw mel in its base; when the converted values ``x * r`` lie above that floor, the mel
       is in the other base.

    A log10 mel of audio without silence given to an ln model without statistics cannot be
    told from an ln mel of quiet audio: ``None``.
    """
    model = features.log
    if model not in _BASE_NAMES:
        return None, "features have no log"
    other = "log10" if model == "ln" else "ln"
    r = _LN10 if model == "ln" else 1.0 / _LN10
    x = np.asarray(mel, dtype=np.float64)
    floor = features.log_floor
    if x.size == 0:
        return None, "empty"
    v = float(x.min())
    at_min = int(np.count_nonzero(np.abs(x - v) <= 1e-4 * max(1.0, abs(v))))
    if max(2, 0.005 * x.size) <= at_min <= 0.99 * x.size:
        if abs(v - floor) <= 1e-3:
            return None, f"floored at the model's floor {floor:.3f}"
        k = _power_of_ten_floor(v, other)
        if k is not None and _power_of_ten_floor(v, model) is None:
            return other, (f"its minimum {v:.3f}, taken by {at_min} of {x.size} values, is the floor "
                           f"{other}(1e-{k:02d})")
    if mean is not None:
        m = x.mean(axis=1)
        d_raw = float(np.sqrt(np.mean(((m - mean) / scale) ** 2)))
        d_other = float(np.sqrt(np.mean(((m * r - mean) / scale) ** 2)))
        d_norm = float(np.sqrt(np.mean(m ** 2)))
        nxt = min(d_raw, d_norm)
        if d_other < nxt and nxt >= 1.0 and nxt >= 3.0 * d_other and v * r >= floor - 0.5:
            return other, (f"its per-bin means are {d_other:.2f} training std from the vocoder's "
                           f"features when read as {other}, {d_raw:.2f} as {model} and {d_norm:.2f} "
                           f"as normalised")
        return None, "statistics undecided"
    if v < floor - 0.5 and v * r >= floor - 0.5:
        return other, (f"values down to {v:.2f} lie below the {model} floor {floor:.2f} of the "
                       f"vocoder's features, and fit above it once converted from {other}")
    return None, "no evidence"


class Vocoder:
    """A trained vocoder with its feature front end: ``synthesize(mel)`` and ``mel(wav)``.

    Load one with ``vocoflow.load(DIR)`` or ``Vocoder.from_pretrained(DIR)`` (see
    :func:`save_vocoder` for the directory layout). The model runs in ``dtype`` on ``device``,
    with weight norm removed and under its inference context (``torch.inference_mode`` unless
    the model says otherwise). Any type of :data:`~vocoflow.vocoders.VOCODER_MODELS` loads.

    >>> import torch, tempfile
    >>> from vocoflow.vocoders import WaveGlow, save_vocoder
    >>> cfg = {"features": {"preset": "asterisk16k", "n_mels": 8},
    ...        "model": {"type": "waveglow", "n_flows": 2, "n_early_every": 1,
    ...                  "wn_layers": 2, "wn_channels": 8}}
    >>> d = save_vocoder(WaveGlow(n_mels=8, hop_length=256, n_flows=2, n_early_every=1,
    ...                           wn_layers=2, wn_channels=8), cfg, tempfile.mkdtemp() + "/voc")
    >>> voc = Vocoder.from_pretrained(d)
    >>> wav = voc.synthesize(torch.full((8, 5), -4.0))
    >>> wav.shape, voc.sample_rate
    (torch.Size([1280]), 16000)
    """

    def __init__(self, model, features: MelConfig, synthesis: dict | None = None,
                 stats=None, normalize: bool = False, directory=None, device="cpu",
                 dtype: torch.dtype = torch.float32, config: dict | None = None):
        self.device = torch.device(device)
        self.dtype = dtype
        self.features = features
        self.synthesis_defaults = {**DEFAULT_SYNTHESIS, **(synthesis or {})}
        self.normalize = bool(normalize)
        self.directory = None if directory is None else Path(directory)
        self.config = config or {}
        arrays = stats_arrays(stats)
        self.stats_mean, self.stats_scale = arrays if arrays is not None else (None, None)
        if self.normalize and self.stats_mean is None:
            raise VocoderError(f"{self._where()}: normalize is true but there are no statistics")
        if hasattr(model, "remove_weight_norm"):
            model.remove_weight_norm()
        self.model = model.to(device=self.device, dtype=dtype).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self._bf16_model = None
        self._denoiser = None
        self._mel = None

    # -- loading --------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, directory, device="cpu", dtype: torch.dtype = torch.float32, *,
                        revision: str | None = None, cache_dir=None,
                        token: str | bool | None = None) -> "Vocoder":
        """Load a saved vocoder directory (checked by :func:`read_vocoder_dir`) or a Hugging Face
        Hub repo id ``owner/name`` holding one (fetched into the local Hub cache;
        ``HF_HUB_OFFLINE=1`` uses the cache only; ``revision``: branch, tag or commit). See
        :func:`~vocoflow.vocoders.hub.resolve_pretrained`."""
        from .hub import resolve_pretrained

        local = resolve_pretrained(directory, revision=revision, cache_dir=cache_dir, token=token)
        saved = read_vocoder_dir(local)
        return cls(saved.model, saved.features, saved.config.get("synthesis"), saved.stats,
                   saved.normalize, saved.directory, device, dtype, config=saved.config)

    def save_pretrained(self, directory) -> Path:
        """Write this vocoder as a vocoder directory with ``model.safetensors`` weights (no
        pickle), ``config.yaml`` and ``stats.npz``: :meth:`from_pretrained` of it synthesises
        exactly what this one does. Upload it to the Hub with ``huggingface_hub.upload_folder``."""
        from .checkpoint import save_vocoder
        from .models import VOCODER_MODELS

        cfg = {k: v for k, v in self.config.items() if k in ("train", "synthesis")}
        cfg["features"] = self.features.to_dict()
        cfg["model"] = {"type": VOCODER_MODELS.of(self.model).name}
        cfg["synthesis"] = dict(self.synthesis_defaults)
        stats = None if self.stats_mean is None else (self.stats_mean, self.stats_scale)
        return save_vocoder(self.model, cfg, directory, stats=stats, normalize=self.normalize,
                            info=dict(self.config.get("training") or {}), safetensors=True)

    # -- properties -----------------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        return self.features.sample_rate

    @property
    def hop_length(self) -> int:
        return self.features.hop_length

    @property
    def n_mels(self) -> int:
        return self.features.n_mels

    def _where(self) -> str:
        return str(self.directory) if self.directory is not None else "vocoder"

    def __repr__(self) -> str:
        return (f"Vocoder({self._where()}, {type(self.model).__name__}, sr={self.sample_rate}, "
                f"n_mels={self.n_mels}, normalize={self.normalize}, device={self.device}, "
                f"dtype={self.dtype})")

    # -- features -------------------------------------------------------------------------------
    def mel(self, wav) -> torch.Tensor:
        """Raw log-mel of ``wav`` (``(T,)`` or ``(B, T)``, at :attr:`sample_rate`) with the
        vocoder's own front end: ``(n_mels, frames)`` or ``(B, n_mels, frames)``.

        The samples must be floats in [-1, 1]: integer samples (e.g. int16 PCM) and float
        samples with a peak above :data:`MAX_FLOAT_PEAK` (int16-scaled audio) raise
        :class:`VocoderError`, as do NaN/inf samples."""
        if self._mel is None:
            self._mel = MelSpectrogram(self.features).to(self.device)
        x = torch.as_tensor(np.asarray(wav) if not isinstance(wav, torch.Tensor) else wav)
        _check_samples(x)
        with torch.inference_mode():
            return self._mel(x.to(self.device, torch.float32))

    def normalize_mel(self, mel: torch.Tensor) -> torch.Tensor:
        """``(mel - mean) / scale`` per bin (mel ``(..., n_mels, frames)``)."""
        self._need_stats("normalise")
        mean = torch.as_tensor(self.stats_mean, dtype=mel.dtype, device=mel.device)[:, None]
        scale = torch.as_tensor(self.stats_scale, dtype=mel.dtype, device=mel.device)[:, None]
        return (mel - mean) / scale

    def denormalize_mel(self, mel: torch.Tensor) -> torch.Tensor:
        self._need_stats("denormalise")
        mean = torch.as_tensor(self.stats_mean, dtype=mel.dtype, device=mel.device)[:, None]
        scale = torch.as_tensor(self.stats_scale, dtype=mel.dtype, device=mel.device)[:, None]
        return mel * scale + mean

    def _need_stats(self, what: str):
        if self.stats_mean is None:
            raise VocoderError(f"{self._where()}: cannot {what} features: the vocoder has no "
                               f"stats.npz")

    def prepare(self, mel, normalized: bool = False, check: bool = True) -> torch.Tensor:
        """Validate an input mel and bring it to the model's input space: float32
        ``(B, n_mels, frames)`` on the CPU (normalised iff the model was trained so).

        Raises :class:`VocoderError` for a wrong number of bins, NaN/inf values or (with
        ``check``) a mel in the wrong log base (see :func:`log_base_mismatch`; raw input only)
        or a normalisation mismatch (see :meth:`synthesize`). A batch of 0 mels
        ``(0, n_mels, frames)`` is returned as it is (empty)."""
        x = mel if isinstance(mel, torch.Tensor) else torch.from_numpy(np.array(mel, dtype=np.float32))
        if x.dim() not in (2, 3):
            raise VocoderError(f"mel must be (n_mels, frames) or (B, n_mels, frames), got "
                               f"shape {tuple(x.shape)}")
        if x.shape[-2] != self.n_mels:
            hint = (" (it looks like (frames, n_mels): transpose it)"
                    if x.shape[-1] == self.n_mels else "")
            raise VocoderError(f"mel has {x.shape[-2]} bins on axis -2 but {self._where()} "
                               f"expects n_mels={self.n_mels}{hint}")
        if x.shape[-1] == 0:
            raise VocoderError("mel has 0 frames")
        x = x.detach().to("cpu", torch.float32)
        finite = torch.isfinite(x)
        if not bool(finite.all()):
            bad = int((~finite).sum())
            raise VocoderError(f"mel contains NaN or infinite values ({bad} of {x.numel()})")
        if x.dim() == 2:
            x = x[None]
        if check and not normalized:
            self._check_log_base(x)
        if check:
            self._check_space(x, normalized)
        if self.normalize and not normalized:
            x = self.normalize_mel(x)
        elif not self.normalize and normalized:
            x = self.denormalize_mel(x)
        return x

    def _check_log_base(self, x: torch.Tensor):
        if self.features.log not in _BASE_NAMES:
            return
        arr = x.cpu().numpy()
        for b in range(arr.shape[0]):
            other, reason = log_base_mismatch(arr[b], self.features, self.stats_mean, self.stats_scale)
            if other is None:
                continue
            item = f" (batch item {b})" if arr.shape[0] > 1 else ""
            model = self.features.log
            how = "multiply it by ln(10) = 2.302585" if model == "ln" else "divide it by ln(10) = 2.302585"
            raise VocoderError(
                f"log base mismatch{item}: the mel looks like a {_BASE_NAMES[other]} mel ({reason}) "
                f"but {self._where()} expects {_BASE_NAMES[model]} mels (its MelConfig has log: "
                f"{model}, floor {model}({self.features.clamp:g}) = {self.features.log_floor:.3f}); "
                f"{how}, or pass check=False (decode: --no-check)")

    def _check_space(self, x: torch.Tensor, normalized: bool):
        floor = None if self.features.log == "none" else self.features.log_floor
        arr = x.cpu().numpy()
        for b in range(arr.shape[0]):
            verdict, reason = looks_normalized(arr[b], self.stats_mean, self.stats_scale, floor)
            if verdict is None or verdict == normalized:
                continue
            item = f" (batch item {b})" if arr.shape[0] > 1 else ""
            if verdict:
                raise VocoderError(
                    f"normalisation mismatch{item}: the mel looks already normalised ({reason}) "
                    f"but raw log-mel was expected; pass normalized=True (decode: --no-normalize) "
                    f"or check=False")
            raise VocoderError(
                f"normalisation mismatch{item}: the mel looks like raw log-mel ({reason}) but "
                f"normalized=True was given; drop it (decode: --normalize-before) or check=False")

    # -- synthesis ------------------------------------------------------------------------------
    def _model(self, bf16: bool):
        if not bf16:
            return self.model
        if self._bf16_model is None:
            if self.device.type == "cpu" and not cpu_has_amx():
                log.warning("bf16 synthesis on a CPU without AMX: bfloat16 matrix multiplies "
                            "are usually no faster (often slower) than float32 there")
            self._bf16_model = bf16_conditioners(self.model)
        return self._bf16_model

    def denoiser(self) -> Denoiser:
        """The bias denoiser: the model's output for a silent mel (the log floor) at sigma 0."""
        if self._denoiser is None:
            x = self.silence(88)[None]
            with _inference(self.model):
                bias = self.model.infer(x.to(self.device, self.dtype), sigma=0.0)
            self._denoiser = Denoiser(bias[0].float(), n_fft=self.features.n_fft).to(self.device)
        return self._denoiser

    def synthesize(self, mel, sigma: float | None = None, denoise: float | None = None,
                   chunk_frames: int | None = None, generator: torch.Generator | None = None,
                   bf16: bool = False, normalized: bool = False, noise: torch.Tensor | None = None,
                   context_frames: int | None = None, check: bool = True,
                   f0=None) -> torch.Tensor:
        """Waveform(s) for a mel ``(n_mels, frames)`` -> ``(frames * hop,)`` or a batch
        ``(B, n_mels, frames)`` -> ``(B, frames * hop)`` (float32, on :attr:`device`).

        Args:
            mel: raw log-mel as made by :meth:`mel` (torch or numpy), or normalised features
                with ``normalized=True``.
            sigma: latent standard deviation (default: the saved ``synthesis.sigma``); finite
                and >= 0, else :class:`VocoderError`.
            denoise: bias-denoiser strength, 0 for none (default: the saved one); finite, >= 0.
            chunk_frames: synthesise in chunks of this many frames (bounded memory); the
                chunks overlap by ``context_frames`` (default: the model's full receptive field,
                which makes the result equal unchunked synthesis up to rounding).
            generator: random generator for the noise (on the CPU).
            bf16: run the conditioner networks in bfloat16 (the coupling arithmetic, 1x1
                convolutions and accumulation stay in the vocoder's dtype).
            noise: unit-variance noise ``(B, frames * hop)`` instead of drawing it.
            check: check the normalisation of the input (see
                :func:`~vocoflow.vocoders.synthesis.looks_normalized`).
            f0: for vocoders with an excitation, F0 in Hz per frame (``(frames,)`` or
                ``(B, frames)``, ``0`` = unvoiced), e.g. from a TTS front end; by default the
                vocoder's own pitch predictor estimates it from the mel.
        """
        sigma, denoise = self._knobs(sigma, denoise)
        single = (mel.dim() if isinstance(mel, torch.Tensor) else np.ndim(mel)) == 2
        x = self.prepare(mel, normalized, check)
        batch, _, frames = x.shape
        n = self.features.num_samples(frames)
        if noise is not None:
            noise = torch.as_tensor(noise)
            if noise.dim() == 1:
                noise = noise[None]
            if tuple(noise.shape) != (batch, n):
                raise VocoderError(f"noise must have shape {(batch, n)}, got {tuple(noise.shape)}")
        f0 = self._check_f0(f0, batch, frames)
        if batch == 0:  # an empty batch: an empty result
            return torch.zeros(0, n, device=self.device)
        wav = self._run(x, sigma, chunk_frames, generator, bf16, noise, context_frames, f0=f0)
        if denoise > 0:
            with torch.inference_mode():
                wav = self.denoiser()(wav, denoise)
        wav = wav.clone() if wav.is_inference() else wav
        return wav[0] if single else wav

    __call__ = synthesize

    def _knobs(self, sigma, denoise) -> tuple[float, float]:
        """``sigma`` and ``denoise`` with the saved defaults filled in, checked to be finite and
        >= 0 (a NaN sigma would make NaN audio)."""
        sigma = self.synthesis_defaults["sigma"] if sigma is None else sigma
        denoise = self.synthesis_defaults.get("denoise", 0.0) if denoise is None else denoise
        return _check_knob("sigma", sigma), _check_knob("denoise", denoise)

    @property
    def uses_excitation(self) -> bool:
        """Whether the vocoder is conditioned on an F0-driven excitation."""
        return bool(getattr(self.model, "uses_excitation", False))

    def predict_f0(self, mel, normalized: bool = False, check: bool = True) -> torch.Tensor:
        """The vocoder's own F0 estimate (Hz per frame, 0 = unvoiced) for a mel."""
        if not self.uses_excitation:
            raise VocoderError(f"{self._where()}: this vocoder has no pitch predictor")
        single = (mel.dim() if isinstance(mel, torch.Tensor) else np.ndim(mel)) == 2
        x = self.prepare(mel, normalized, check).to(self.device, self.dtype)
        if x.shape[0] == 0:
            return torch.zeros(0, x.shape[-1], device=self.device)
        with _inference(self.model):
            f0 = self.model.predict_f0(x).float()
        f0 = f0.clone() if f0.is_inference() else f0
        return f0[0] if single else f0

    def source(self, mel, f0=None, normalized: bool = False, check: bool = True) -> torch.Tensor:
        """The flow's mean alone for a vocoder with ``source: mel``: the parameter-free
        harmonic-plus-noise synthesis of ``mel`` from ``f0`` (Hz per frame) or from the
        vocoder's predicted F0, ``(frames * hop,)`` or ``(B, frames * hop)``; what the vocoder
        synthesises at sigma 0 before any training (ablations, diagnostics)."""
        if getattr(self.model, "source", None) is None:
            raise VocoderError(f"{self._where()}: this vocoder has no mel source (source: none)")
        single = (mel.dim() if isinstance(mel, torch.Tensor) else np.ndim(mel)) == 2
        x = self.prepare(mel, normalized, check).to(self.device, self.dtype)
        f0 = self._check_f0(f0, x.shape[0], x.shape[-1])
        with _inference(self.model):
            if f0 is None:
                f0 = self.model.predict_f0(x)
            y = self.model.source(x, f0.to(x.device), normalized=True).float()
        y = y.clone() if y.is_inference() else y
        return y[0] if single else y

    def _check_f0(self, f0, batch: int, frames: int):
        if f0 is None:
            return None
        if not self.uses_excitation:
            raise VocoderError(f"{self._where()}: f0 given, but this vocoder takes no F0 "
                               "(no excitation)")
        # numpy input is copied (it may be a read-only view of an ark)
        f0 = torch.as_tensor(f0 if isinstance(f0, torch.Tensor) else np.array(f0, dtype=np.float32),
                             dtype=torch.float32)
        if f0.dim() == 1:
            f0 = f0[None]
        if tuple(f0.shape) != (batch, frames):
            raise VocoderError(f"f0 must have one value per mel frame, shape {(batch, frames)}, "
                               f"got {tuple(f0.shape)}")
        if not torch.isfinite(f0).all() or (f0 < 0).any():
            raise VocoderError("f0 must be finite and >= 0 Hz (0 = unvoiced)")
        return f0

    def _run(self, x, sigma, chunk_frames, generator, bf16, noise, context_frames=None, f0=None):
        """Model-space mel ``(B, n_mels, F)`` (CPU float32) -> ``(B, F * hop)`` float32."""
        sigma = float(self.synthesis_defaults["sigma"] if sigma is None else sigma)
        batch, _, frames = x.shape
        if noise is None:
            noise = torch.randn(batch, frames * self.hop_length, generator=generator)
        x = x.to(self.device, self.dtype)
        noise = noise.to(self.device, self.dtype)
        model = self._model(bf16)
        kw = {}
        if f0 is not None:
            kw["f0"] = f0.to(self.device, self.dtype)
        with _inference(model):
            if chunk_frames and chunk_frames < frames:
                wav = chunked_infer(model, x, sigma, noise, int(chunk_frames), context_frames, **kw)
            else:
                wav = model.infer(x, sigma=sigma, noise=noise, **kw)
            wav = wav.float()
        return wav.clone() if wav.is_inference() else wav

    def silence(self, frames: int) -> torch.Tensor:
        """A silent mel ``(n_mels, frames)`` in the *model's* input space (the log floor,
        normalised when the model is)."""
        x = torch.full((1, self.n_mels, frames),
                       self.features.log_floor if self.features.log != "none" else 0.0)
        return (self.normalize_mel(x) if self.normalize else x)[0]

    def synthesize_batch(self, mels: list, sigma: float | None = None, denoise: float | None = None,
                         chunk_frames: int | None = None, bf16: bool = False,
                         normalized: bool = False, noises: list | None = None,
                         generator: torch.Generator | None = None, check: bool = True,
                         prepared: bool = False, f0s: list | None = None) -> list[torch.Tensor]:
        """Synthesise mels ``(n_mels, frames_i)`` of different lengths in one batch.

        Shorter mels are padded with silent frames and their outputs cut to ``frames_i * hop``
        samples (so an utterance's last samples can differ slightly from synthesising it
        alone). ``noises`` gives each utterance's unit noise ``(frames_i * hop,)``.
        ``prepared=True`` takes mels already in the model space (see :meth:`prepare`).
        ``f0s`` (vocoders with an excitation): each utterance's F0 ``(frames_i,)`` in Hz.
        """
        sigma, denoise = self._knobs(sigma, denoise)
        if not mels:
            return []
        xs = [m if prepared else self.prepare(m, normalized, check)[0] for m in mels]
        xs = [torch.as_tensor(m, dtype=torch.float32) for m in xs]
        longest = max(m.shape[-1] for m in xs)
        hop = self.hop_length
        pad = self.silence(1)
        batch = torch.stack([torch.cat([m, pad.expand(-1, longest - m.shape[-1])], dim=1)
                             for m in xs])
        noise = None
        if noises is not None:
            noise = torch.zeros(len(xs), longest * hop)
            for i, (m, z) in enumerate(zip(xs, noises)):
                z = torch.as_tensor(z, dtype=torch.float32).reshape(-1)
                if z.numel() != m.shape[-1] * hop:
                    raise VocoderError(f"noise {i} has {z.numel()} values, expected {m.shape[-1] * hop}")
                noise[i, : z.numel()] = z
        f0 = None
        if f0s is not None:
            if len(f0s) != len(xs):
                raise VocoderError(f"{len(f0s)} F0 tracks for {len(xs)} mels")
            f0 = torch.zeros(len(xs), longest)
            for i, (m, f) in enumerate(zip(xs, f0s)):
                f0[i, : m.shape[-1]] = self._check_f0(f, 1, m.shape[-1])[0]
        wav = self._run(batch, sigma, chunk_frames, generator, bf16, noise, f0=f0)
        outs = [wav[i, : m.shape[-1] * hop] for i, m in enumerate(xs)]
        if denoise > 0:
            with torch.inference_mode():
                outs = [self.denoiser()(w, denoise).clone() for w in outs]
        return outs
