"""Log-mel features: :class:`MelConfig`, presets and the batched :class:`MelSpectrogram`.

Alignment rule (the one every part of vocoflow relies on)
--------------------------------------------------------
1. The waveform is trimmed to a multiple of ``hop_length`` (:func:`align`): the last
   ``len % hop`` samples are dropped (or, with ``mode="pad"``, zeros are appended up to the next
   multiple).
2. It is padded by ``(n_fft - hop_length) // 2`` samples on the left and the rest of
   ``n_fft - hop_length`` on the right (``pad_mode``, reflection by default), and the STFT is
   taken with ``center=False``.

So ``frames == samples // hop_length`` and frame ``t`` is centred on samples
``[t * hop, (t + 1) * hop)``: a mel segment of ``F`` frames starting at frame ``f`` matches the
audio segment of ``F * hop`` samples starting at sample ``f * hop`` exactly.

The mel power is ``|STFT| ** power`` (``power=1``: magnitude), projected on a mel filterbank
(slaney or HTK scale, optional slaney area normalisation), floored at ``clamp`` and taken to a
natural or base-10 log.
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

from ._yaml import dump_flat, load_flat

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
    ``log`` (``ln``, ``log10`` or ``none``), ``clamp`` (floor before the log) and ``pad_mode``
    (``reflect``, ``replicate`` or ``constant``: how the ``(n_fft - hop) / 2`` edges are filled).

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

    def __post_init__(self):
        # normalise numeric types so that dict/YAML round trips compare equal
        for name in ("sample_rate", "n_fft", "hop_length", "win_length", "n_mels"):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or int(value) <= 0:
                raise ValueError(f"MelConfig.{name} must be a positive integer, got {value!r}")
            object.__setattr__(self, name, int(value))
        for name in ("fmin", "power", "clamp"):
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
        """Samples padded (left, right) before the ``center=False`` STFT."""
        total = self.n_fft - self.hop_length
        return total // 2, total - total // 2

    @property
    def log_floor(self) -> float:
        """The feature value of digital silence: ``log(clamp)`` in the configured base."""
        if self.log == "ln":
            return math.log(self.clamp)
        if self.log == "log10":
            return math.log10(self.clamp)
        return self.clamp

    def num_frames(self, num_samples: int) -> int:
        return num_samples // self.hop_length

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
        return dump_flat(self.to_dict(), header="vocoflow MelConfig (vocoflow.audio.mel)")

    @classmethod
    def from_yaml(cls, text: str, name: str = "<yaml>") -> "MelConfig":
        return cls.from_dict(load_flat(text, name))

    def save(self, path: str | os.PathLike) -> None:
        """Write YAML atomically (temp file in the same directory, then rename)."""
        from vocoflow.atomic import atomic_write_text

        atomic_write_text(path, self.to_yaml())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "MelConfig":
        with open(path, encoding="utf-8") as f:
            return cls.from_yaml(f.read(), name=str(path))


PRESETS: dict[str, MelConfig] = {
    # NVIDIA WaveGlow / Tacotron 2 front end.
    "waveglow": MelConfig(
        sample_rate=22050, n_fft=1024, hop_length=256, win_length=1024, n_mels=80,
        fmin=0.0, fmax=8000.0, mel_scale="slaney", norm="slaney", power=1.0, log="ln",
        clamp=1e-5,
    ),
    # ParallelWaveGAN / ESPnet LJSpeech configs (22.05 kHz; their 24 kHz recipes use other
    # FFT sizes: override sample_rate, n_fft, hop_length, win_length for those).
    "pwg": MelConfig(
        sample_rate=22050, n_fft=1024, hop_length=256, win_length=1024, n_mels=80,
        fmin=80.0, fmax=7600.0, mel_scale="slaney", norm="slaney", power=1.0, log="log10",
        clamp=1e-10,
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
    """The :class:`MelConfig` of a named preset (``waveglow``, ``pwg``, ``asterisk16k``)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown feature preset {name!r}; known: {', '.join(list_presets())}")


def num_frames(num_samples: int, hop_length: int) -> int:
    return num_samples // hop_length


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

    Input ``(T,)`` or ``(B, T)`` float waveform in [-1, 1]; output ``(n_mels, T // hop)`` or
    ``(B, n_mels, T // hop)``. The input is first trimmed to a multiple of the hop (see the
    module docstring). Move it with ``.to(device)``; ``.double()`` computes in float64.

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
            power=config.power,
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
        return num_samples // self.config.hop_length

    def extra_repr(self) -> str:
        c = self.config
        return f"sr={c.sample_rate}, n_fft={c.n_fft}, hop={c.hop_length}, n_mels={c.n_mels}"

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        c = self.config
        if wav.dim() not in (1, 2):
            raise ValueError(f"expected a waveform of shape (T,) or (B, T), got {tuple(wav.shape)}")
        squeeze = wav.dim() == 1
        x = wav[None] if squeeze else wav
        x = align(x, c.hop_length).to(self.mel_basis.dtype)
        frames = x.shape[-1] // c.hop_length
        if frames == 0:
            raise ValueError(
                f"waveform of {wav.shape[-1]} samples is shorter than one hop ({c.hop_length})"
            )
        left, right = c.pad
        if c.pad_mode == "reflect" and x.shape[-1] <= max(left, right):
            raise ValueError(
                f"waveform of {x.shape[-1]} samples is too short to reflect-pad by {max(left, right)}"
            )
        x = F.pad(x[:, None], (left, right), mode=c.pad_mode).squeeze(1)
        spec = self.spectrogram(x)  # (B, n_freqs, frames)
        mel = torch.matmul(self.mel_basis, spec)
        if c.log == "ln":
            mel = torch.log(torch.clamp(mel, min=c.clamp))
        elif c.log == "log10":
            mel = torch.log10(torch.clamp(mel, min=c.clamp))
        else:
            mel = torch.clamp(mel, min=c.clamp)
        return mel[0] if squeeze else mel
