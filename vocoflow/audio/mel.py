"""Log-mel features: :class:`MelConfig`, presets and the batched :class:`MelSpectrogram`.

Frame grids (``MelConfig.center``)
----------------------------------
A waveform of ``T`` samples is padded (``pad_mode``, reflection by default) and cut into
windows of ``n_fft`` samples every ``hop_length`` samples; :meth:`MelConfig.num_frames` is the
one place that says how many frames that gives:

* ``center=False`` (vocoflow's default grid; HiFi-GAN's): the waveform is first trimmed to a
  multiple of the hop (:func:`align`: the last ``T % hop`` samples are dropped), then padded by
  ``(n_fft - hop) // 2`` samples on the left and the rest of ``n_fft - hop`` on the right:
  ``frames = T // hop`` (for ``T >= hop``) and frame ``t`` is centred on the hop
  ``[t * hop, (t + 1) * hop)``; the features of a waveform are those of its hop-aligned part.
  (HiFi-GAN pads the untrimmed waveform: when ``T`` is not a multiple of the hop its last two
  frames differ, the count is the same.)
* ``center=True`` (NVIDIA Tacotron 2's, librosa's and ParallelWaveGAN/ESPnet's): the whole
  waveform, ``n_fft // 2`` samples padded on both sides: ``frames = 1 + T // hop`` and frame
  ``t`` is centred on sample ``t * hop``.

Pairs of audio and mel (dumps, training segments, a vocoder's output) always hold
``frames * hop`` samples (:meth:`MelConfig.num_samples`): with ``center=False`` the dump trims the
waveform to a multiple of the hop before the analysis (the features are then those of the stored
audio); with ``center=True`` the features are those of the whole waveform and its end is
extended by repeating the last sample, or cut, to ``frames * hop`` samples, as ParallelWaveGAN's
preprocessing does (:meth:`MelConfig.fit_audio`). A mel segment of ``F`` frames starting at
frame ``f`` therefore goes with the ``F * hop`` samples starting at sample ``f * hop``.

The spectrum is ``(|STFT|^2 + magnitude_eps) ** (power / 2)`` (``power=1``: magnitude),
projected on a mel filterbank (slaney or HTK scale, optional slaney area normalisation),
floored at ``clamp`` and taken to a natural or base-10 log.

Presets (all 80 mels, hann window of ``n_fft`` samples, slaney filterbank):

============  =======  ==========  ===========  =====  ========  ======  ==============  ==============
preset        rate Hz  n_fft/hop   fmin-fmax    log    clamp     center  magnitude_eps   frames
============  =======  ==========  ===========  =====  ========  ======  ==============  ==============
tacotron2     22050    1024/256    0-8000       ln     1e-5      yes     0               ``1 + T // 256``
pwg           22050    1024/256    80-7600      log10  1e-10     yes     0               ``1 + T // 256``
hifigan       22050    1024/256    0-8000       ln     1e-5      no      1e-9            ``T // 256``
waveglow      22050    1024/256    0-8000       ln     1e-5      no      0               ``T // 256``
asterisk16k   16000    1024/256    0-8000       ln     1e-5      no      0               ``T // 256``
============  =======  ==========  ===========  =====  ========  ======  ==============  ==============

``tacotron2`` matches NVIDIA's ``TacotronSTFT.mel_spectrogram``, ``pwg`` ParallelWaveGAN's
``logmelfilterbank`` (LJSpeech settings) and ``hifigan`` HiFi-GAN's ``mel_spectrogram``, frame
for frame (tests/test_mel_presets.py checks each against an independent librosa computation).
``waveglow`` is Tacotron 2's filterbank and log on vocoflow's non-centred grid, kept for the
dumps and models made with it.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
import torchaudio

from vocoflow.yamlfile import load_flat_mapping

__all__ = [
    "MelConfig",
    "MelSpectrogram",
    "PRESETS",
    "get_preset",
    "list_presets",
    "align",
    "num_frames",
]

_WINDOWS = {
    "hann": torch.hann_window,
    "hamming": torch.hamming_window,
    "blackman": torch.blackman_window,
}
_LOGS = ("ln", "log10", "none")


@dataclass(frozen=True)
class MelConfig:
    """Everything that defines a log-mel front end; saved next to every dump and model.

    Fields: ``sample_rate`` (Hz), ``n_fft``, ``hop_length``, ``win_length`` (samples),
    ``n_mels``, ``fmin``/``fmax`` (Hz; ``fmax=None`` means Nyquist), ``window``
    (``hann``/``hamming``/``blackman``, periodic), ``mel_scale`` (``slaney``/``htk``),
    ``norm`` (``slaney`` area normalisation or ``None``), ``power`` (1: magnitude, 2: power),
    ``log`` (``ln``, ``log10`` or ``none``), ``clamp`` (floor before the log), ``pad_mode``
    (``reflect``, ``replicate`` or ``constant``: how the edges are filled), ``center`` (the frame
    grid, see the module docstring) and ``magnitude_eps`` (added to ``|STFT|^2`` before the
    square root; HiFi-GAN's 1e-9).

    >>> cfg = get_preset("waveglow")
    >>> cfg.sample_rate, cfg.hop_length, cfg.n_mels, cfg.log
    (22050, 256, 80, 'ln')
    >>> MelConfig.from_dict(cfg.to_dict()) == cfg
    True
    >>> MelConfig.from_dict({"preset": "pwg", "sample_rate": 24000}).fmin
    80.0
    """

    sample_rate: int = 22050
    n_fft: int = 1024
    hop_length: int = 256
    win_length: int = 1024
    n_mels: int = 80
    fmin: float = 0.0
    fmax: float | None = 8000.0
    window: str = "hann"
    mel_scale: str = "slaney"
    norm: str | None = "slaney"
    power: float = 1.0
    log: str = "ln"
    clamp: float = 1e-5
    pad_mode: str = "reflect"
    center: bool = False
    magnitude_eps: float = 0.0

    def __post_init__(self):
        # normalise numeric types so that dict/YAML round trips compare equal
        for name in ("sample_rate", "n_fft", "hop_length", "win_length", "n_mels"):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or int(value) <= 0:
                raise ValueError(f"MelConfig.{name} must be a positive integer, got {value!r}")
            object.__setattr__(self, name, int(value))
        if not isinstance(self.center, bool):
            raise ValueError(f"MelConfig.center must be true or false, got {self.center!r}")
        for name in ("fmin", "power", "clamp", "magnitude_eps"):
            object.__setattr__(self, name, float(getattr(self, name)))
        if self.fmax is not None:
            object.__setattr__(self, "fmax", float(self.fmax))
        if self.win_length > self.n_fft:
            raise ValueError(f"win_length {self.win_length} > n_fft {self.n_fft}")
        if self.hop_length > self.n_fft:
            raise ValueError(f"hop_length {self.hop_length} > n_fft {self.n_fft}")
        nyquist = self.sample_rate / 2
        fmax = nyquist if self.fmax is None else self.fmax
        if not 0 <= self.fmin < fmax <= nyquist + 1e-9:
            raise ValueError(
                f"need 0 <= fmin < fmax <= sample_rate/2, got fmin={self.fmin}, fmax={fmax}, "
                f"sample_rate={self.sample_rate}"
            )
        if self.window not in _WINDOWS:
            raise ValueError(f"window must be one of {sorted(_WINDOWS)}, got {self.window!r}")
        if self.mel_scale not in ("slaney", "htk"):
            raise ValueError(f"mel_scale must be 'slaney' or 'htk', got {self.mel_scale!r}")
        if self.norm not in (None, "slaney"):
            raise ValueError(f"norm must be 'slaney' or None, got {self.norm!r}")
        if self.log not in _LOGS:
            raise ValueError(f"log must be one of {_LOGS}, got {self.log!r}")
        if self.power <= 0:
            raise ValueError(f"power must be > 0, got {self.power}")
        if self.magnitude_eps < 0:
            raise ValueError(f"magnitude_eps must be >= 0, got {self.magnitude_eps}")
        if self.clamp <= 0:
            raise ValueError(f"clamp must be > 0, got {self.clamp}")
        if self.pad_mode not in ("reflect", "replicate", "constant"):
            raise ValueError(f"pad_mode must be reflect/replicate/constant, got {self.pad_mode!r}")

    # ---- derived quantities
    @property
    def n_freqs(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def f_max(self) -> float:
        """``fmax`` with ``None`` resolved to the Nyquist frequency."""
        return self.sample_rate / 2 if self.fmax is None else self.fmax

    @property
    def pad(self) -> tuple[int, int]:
        """Samples padded (left, right) before the STFT: ``n_fft // 2`` on both sides when
        ``center``, else ``(n_fft - hop) // 2`` and the rest of ``n_fft - hop``."""
        if self.center:
            return self.n_fft // 2, self.n_fft // 2
        total = self.n_fft - self.hop_length
        return total // 2, total - total // 2

    @property
    def min_samples(self) -> int:
        """The shortest waveform the front end takes: one hop, and longer than the reflected
        edge with ``pad_mode="reflect"``."""
        need = self.hop_length
        if self.pad_mode == "reflect":
            need = max(need, max(self.pad) + 1)
        return need

    @property
    def log_floor(self) -> float:
        """The feature value of digital silence: ``log(clamp)`` in the configured base."""
        if self.log == "ln":
            return math.log(self.clamp)
        if self.log == "log10":
            return math.log10(self.clamp)
        return self.clamp

    def num_frames(self, num_samples: int) -> int:
        """Frames of the features of a waveform of ``num_samples`` samples (the one place
        vocoflow computes it): ``1 + (T + pad_left + pad_right - n_fft) // hop``, that is
        ``T // hop``, or ``1 + T // hop`` with ``center`` (even ``n_fft``).

        >>> get_preset("hifigan").num_frames(22050), get_preset("tacotron2").num_frames(22050)
        (86, 87)
        """
        left, right = self.pad
        return max(0, 1 + (int(num_samples) + left + right - self.n_fft) // self.hop_length)

    def num_samples(self, num_frames: int) -> int:
        """Samples of the audio paired with (or generated from) ``num_frames`` frames:
        ``frames * hop`` on either grid."""
        return int(num_frames) * self.hop_length

    def segment_frames(self, num_samples: int) -> int:
        """Frames that go with a stretch of ``num_samples`` samples of paired audio (a training
        segment, a crop): ``num_samples // hop`` on either grid."""
        return int(num_samples) // self.hop_length

    def fit_audio(self, wav, num_frames: int):
        """The waveform paired with its ``num_frames`` frames: cut, or extended by repeating its
        last sample, to :meth:`num_samples` samples (numpy arrays and torch tensors)."""
        n = self.num_samples(num_frames)
        if wav.shape[-1] >= n:
            return wav[..., :n]
        extra = n - wav.shape[-1]
        if isinstance(wav, torch.Tensor):
            return torch.cat([wav, wav[..., -1:].expand(*wav.shape[:-1], extra)], dim=-1)
        widths = [(0, 0)] * (wav.ndim - 1) + [(0, extra)]
        return np.pad(wav, widths, mode="edge")

    # ---- serialisation
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "MelConfig":
        """Build from a dict; ``{"preset": NAME, **overrides}`` starts from a preset."""
        data = dict(data)
        base = {}
        preset = data.pop("preset", None)
        if preset is not None:
            base = get_preset(preset).to_dict()
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown MelConfig field(s): {', '.join(unknown)}")
        base.update(data)
        return cls(**base)

    def replace(self, **changes) -> "MelConfig":
        return dataclasses.replace(self, **changes)

    def to_yaml(self) -> str:
        """YAML text (``yaml.safe_dump``, fields in order) under a comment line."""
        import yaml

        body = yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=False)
        return "# vocoflow MelConfig (vocoflow.audio.mel)\n" + body

    @classmethod
    def from_yaml(cls, text: str, name: str = "<yaml>") -> "MelConfig":
        """Read a flat ``field: value`` YAML mapping (``yaml.safe_load``; ``preset: NAME`` starts
        from a preset); a ``ValueError`` naming ``name`` (and the line, for YAML errors)."""
        data = load_flat_mapping(text, name)
        for key in ("clamp", "fmin", "fmax", "power", "magnitude_eps"):
            # YAML 1.1 reads 1e-5 (no dot) as a string: accept the usual float spellings
            if isinstance(data.get(key), str):
                try:
                    data[key] = float(data[key])
                except ValueError:
                    pass
        try:
            return cls.from_dict(data)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{name}: {e}") from None

    def save(self, path: str | os.PathLike) -> None:
        """Write YAML atomically (temp file in the same directory, then rename)."""
        from vocoflow.atomic import atomic_write_text

        atomic_write_text(path, self.to_yaml())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "MelConfig":
        with open(path, encoding="utf-8") as f:
            return cls.from_yaml(f.read(), name=str(path))


PRESETS: dict[str, MelConfig] = {
    # NVIDIA Tacotron 2 / WaveGlow (layers.TacotronSTFT): centred grid, 1 + T // 256 frames.
    "tacotron2": MelConfig(
        sample_rate=22050, n_fft=1024, hop_length=256, win_length=1024, n_mels=80,
        fmin=0.0, fmax=8000.0, mel_scale="slaney", norm="slaney", power=1.0, log="ln",
        clamp=1e-5, center=True,
    ),
    # HiFi-GAN (meldataset.mel_spectrogram): (n_fft - hop) / 2 reflected on each side, not
    # centred, sqrt(|X|^2 + 1e-9): T // 256 frames.
    "hifigan": MelConfig(
        sample_rate=22050, n_fft=1024, hop_length=256, win_length=1024, n_mels=80,
        fmin=0.0, fmax=8000.0, mel_scale="slaney", norm="slaney", power=1.0, log="ln",
        clamp=1e-5, center=False, magnitude_eps=1e-9,
    ),
    # Tacotron 2's filterbank and log on vocoflow's non-centred grid (T // 256 frames; this is
    # not Tacotron 2's own grid, which is the "tacotron2" preset); kept for existing dumps.
    "waveglow": MelConfig(
        sample_rate=22050, n_fft=1024, hop_length=256, win_length=1024, n_mels=80,
        fmin=0.0, fmax=8000.0, mel_scale="slaney", norm="slaney", power=1.0, log="ln",
        clamp=1e-5,
    ),
    # ParallelWaveGAN / ESPnet LJSpeech configs (bin/preprocess.py logmelfilterbank: librosa
    # centred STFT, 1 + T // 256 frames; 22.05 kHz, their 24 kHz recipes use other FFT sizes:
    # override sample_rate, n_fft, hop_length, win_length for those).
    "pwg": MelConfig(
        sample_rate=22050, n_fft=1024, hop_length=256, win_length=1024, n_mels=80,
        fmin=80.0, fmax=7600.0, mel_scale="slaney", norm="slaney", power=1.0, log="log10",
        clamp=1e-10, center=True,
    ),
    # 16 kHz front end for the bundled asterisk_en corpus (egs/asterisk_en/voc1).
    "asterisk16k": MelConfig(
        sample_rate=16000, n_fft=1024, hop_length=256, win_length=1024, n_mels=80,
        fmin=0.0, fmax=8000.0, mel_scale="slaney", norm="slaney", power=1.0, log="ln",
        clamp=1e-5,
    ),
}


def list_presets() -> list[str]:
    return sorted(PRESETS)


def get_preset(name: str) -> MelConfig:
    """The :class:`MelConfig` of a named preset (``tacotron2``, ``pwg``, ``hifigan``,
    ``waveglow``, ``asterisk16k``)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown feature preset {name!r}; known: {', '.join(list_presets())}")


def num_frames(num_samples: int, config: "MelConfig | str") -> int:
    """:meth:`MelConfig.num_frames` of a config or preset name."""
    cfg = get_preset(config) if isinstance(config, str) else config
    return cfg.num_frames(num_samples)


def align(wav, hop_length: int, mode: str = "trim"):
    """Cut (``trim``) or zero-pad (``pad``) the last axis to a multiple of ``hop_length``.

    Works on numpy arrays and torch tensors.

    >>> align(np.arange(10), 4)
    array([0, 1, 2, 3, 4, 5, 6, 7])
    >>> align(torch.ones(2, 5), 4, mode="pad").shape
    torch.Size([2, 8])
    """
    n = wav.shape[-1]
    if mode == "trim":
        return wav[..., : (n // hop_length) * hop_length]
    if mode == "pad":
        extra = (-n) % hop_length
        if extra == 0:
            return wav
        if isinstance(wav, torch.Tensor):
            return F.pad(wav, (0, extra))
        widths = [(0, 0)] * (wav.ndim - 1) + [(0, extra)]
        return np.pad(wav, widths)
    raise ValueError(f"mode must be 'trim' or 'pad', got {mode!r}")


class MelSpectrogram(torch.nn.Module):
    """Batched log-mel extractor (torchaudio STFT + mel filterbank), CPU or GPU.

    Input ``(T,)`` or ``(B, T)`` float waveform in [-1, 1]; output ``(n_mels, frames)`` or
    ``(B, n_mels, frames)`` with ``frames = config.num_frames(T)`` (``T // hop``, or
    ``1 + T // hop`` with ``center``; see the module docstring). Move it with ``.to(device)``;
    ``.double()`` computes in float64.

    >>> mel = MelSpectrogram("asterisk16k")
    >>> mel(torch.zeros(2, 16000)).shape
    torch.Size([2, 80, 62])
    >>> abs(float(mel(torch.zeros(1024)).max()) - mel.config.log_floor) < 1e-5
    True
    """

    def __init__(self, config: MelConfig | str | dict | None = None):
        super().__init__()
        if config is None:
            config = MelConfig()
        elif isinstance(config, str):
            config = get_preset(config)
        elif isinstance(config, dict):
            config = MelConfig.from_dict(config)
        self.config = config
        # Window and filterbank are computed in float64 and stored as float32, whatever torch's
        # default dtype is: the features are then the same in every process and program.
        self.spectrogram = torchaudio.transforms.Spectrogram(
            n_fft=config.n_fft,
            win_length=config.win_length,
            hop_length=config.hop_length,
            pad=0,
            window_fn=_WINDOWS[config.window],
            power=None,
            center=False,
            wkwargs={"dtype": torch.float64},
        )
        saved = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)  # melscale_fbanks uses the default dtype
        try:
            fbank = torchaudio.functional.melscale_fbanks(
                n_freqs=config.n_freqs,
                f_min=config.fmin,
                f_max=config.f_max,
                n_mels=config.n_mels,
                sample_rate=config.sample_rate,
                norm=config.norm,
                mel_scale=config.mel_scale,
            )
        finally:
            torch.set_default_dtype(saved)
        self.register_buffer("mel_basis", fbank.T.contiguous().to(torch.float64), persistent=False)
        self.float()

    def num_frames(self, num_samples: int) -> int:
        return self.config.num_frames(num_samples)

    def extra_repr(self) -> str:
        c = self.config
        return f"sr={c.sample_rate}, n_fft={c.n_fft}, hop={c.hop_length}, n_mels={c.n_mels}"

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        c = self.config
        if wav.dim() not in (1, 2):
            raise ValueError(f"expected a waveform of shape (T,) or (B, T), got {tuple(wav.shape)}")
        squeeze = wav.dim() == 1
        x = wav[None] if squeeze else wav
        # the non-centred grid takes the hop-aligned part of the waveform (module docstring)
        x = (x if c.center else align(x, c.hop_length)).to(self.mel_basis.dtype)
        if x.shape[-1] < c.hop_length:
            raise ValueError(
                f"waveform of {wav.shape[-1]} samples is shorter than one hop ({c.hop_length})"
            )
        left, right = c.pad
        if c.pad_mode == "reflect" and x.shape[-1] <= max(left, right):
            raise ValueError(
                f"waveform of {x.shape[-1]} samples is too short to reflect-pad by {max(left, right)}"
            )
        frames = c.num_frames(x.shape[-1])
        x = F.pad(x[:, None], (left, right), mode=c.pad_mode).squeeze(1)
        stft = self.spectrogram(x)[..., :frames]  # complex (B, n_freqs, frames)
        if c.magnitude_eps:
            power2 = stft.real.square() + stft.imag.square() + c.magnitude_eps
            spec = power2.pow(c.power / 2)
        else:
            spec = stft.abs().pow(c.power)
        mel = torch.matmul(self.mel_basis, spec)
        if c.log == "ln":
            mel = torch.log(torch.clamp(mel, min=c.clamp))
        elif c.log == "log10":
            mel = torch.log10(torch.clamp(mel, min=c.clamp))
        else:
            mel = torch.clamp(mel, min=c.clamp)
        return mel[0] if squeeze else mel
