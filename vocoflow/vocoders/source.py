"""A parameter-free source-filter synthesiser: speech-like audio from a log-mel and an F0 track.

:class:`MelSource` turns the mel the vocoder is conditioned on, plus F0, into a waveform by
classic signal processing (a harmonic-plus-noise model in the spirit of sinusoidal and
source-filter vocoders; no learned weights):

1. **Envelope.** The mel band magnitudes are spread back onto the linear STFT bins (each band's
   mean magnitude, interpolated by the filterbank's own triangle weights): a smooth magnitude
   envelope ``S(f, t)``.
2. **Harmonics.** In voiced frames harmonic ``k`` (below Nyquist) gets the amplitude whose
   windowed spectrum carries the envelope's magnitude over its band ``[(k - 1/2) F0, (k + 1/2)
   F0]`` (for a Hann window of ``N`` samples a sinusoid of amplitude ``A`` has a spectral
   magnitude summing to ``A * sum(w)``), with the cumulative phase of
   :class:`~vocoflow.nets.excitation.HarmonicExcitation` (continuous across frames and chunks);
   amplitudes are interpolated between frame centres, so voicing onsets fade over one hop.
3. **Noise.** Unvoiced frames (and, with ``voiced_noise``, the upper band of voiced ones) get
   the envelope with a pseudo-random phase that is a fixed hash of frame and bin (the same
   conditioning always gives the same signal), overlap-added.
4. **Mel matching.** ``refine`` times, the mel of the synthesised signal is compared with the
   target mel and the signal's STFT is scaled band by band towards it (gains clamped to
   ``[1 / max_gain, max_gain]``) and overlap-added back.

Inside a flow vocoder (``WaveGlow`` with ``source: mel``) it is the *mean* of the flow: the
flow models ``audio - source(mel, F0)``, an exact, conditioning-only translation (log-determinant
0), so that at initialisation, when every coupling is the identity, the model already speaks
as well as this synthesiser and training only has to learn the difference.

>>> import torch
>>> from vocoflow.audio.mel import MelSpectrogram
>>> fe = MelSpectrogram("asterisk16k")
>>> t = torch.arange(16000) / 16000
>>> tone = 0.3 * torch.sin(2 * torch.pi * 200 * t)
>>> mel = fe(tone)[None]
>>> src = MelSource(fe.config)(mel, torch.full((1, mel.shape[-1]), 200.0))
>>> src.shape
torch.Size([1, 15872])
>>> bool((fe(src[0])[:, 4:-4] - mel[0, :, 4:-4]).abs().mean() < 0.5)  # mel within ~0.5 nats
True
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vocoflow.audio.mel import MelConfig, MelSpectrogram
from vocoflow.nets.excitation import cumulative_phase, fill_unvoiced, frame_interpolation, upsample_f0

__all__ = ["MelSource"]


def _hash_phase(frames: int, bins: int, dtype=torch.float64, device=None) -> torch.Tensor:
    """A fixed pseudo-random phase ``(bins, frames)`` in ``[0, 2 pi)`` (a sine hash of the frame
    and bin index: deterministic on every device and with no generator state)."""
    t = torch.arange(frames, dtype=torch.float64, device=device)
    f = torch.arange(bins, dtype=torch.float64, device=device)
    h = torch.sin(f[:, None] * 12.9898 + t[None, :] * 78.233 + 0.5) * 43758.5453
    return (2 * math.pi * torch.remainder(h, 1.0)).to(dtype)


class MelSource(nn.Module):
    """``(mel (B, n_mels, frames), f0 (B, frames)) -> audio (B, frames * hop)``.

    ``mel`` is in the front end's own space (its log and power); a model trained on normalised
    features stores their statistics with :meth:`set_mel_statistics` and passes
    ``normalized=True``. ``features`` is a :class:`~vocoflow.audio.MelConfig` (or its dict):
    the synthesiser uses its STFT grid and filterbank, so the source's frames are the mel's.
    """

    def __init__(self, features, max_harmonics: int = 96, voiced_noise: float = 0.0,
                 voiced_noise_hz: float = 4000.0, refine: int = 2, max_gain: float = 10.0):
        super().__init__()
        if isinstance(features, dict):
            features = MelConfig.from_dict(features)
        if features.log not in ("ln", "log10", "none"):
            raise ValueError(f"unsupported mel log {features.log!r}")
        self.features = features
        self.max_harmonics = int(max_harmonics)
        self.voiced_noise = float(voiced_noise)
        self.voiced_noise_hz = float(voiced_noise_hz)
        self.refine = int(refine)
        self.max_gain = float(max_gain)
        self.mel = MelSpectrogram(features).double()
        fb = self.mel.mel_basis  # (n_mels, n_freqs) float64
        band = fb.sum(dim=1, keepdim=True)  # per-band weight sum over bins
        cover = fb.sum(dim=0, keepdim=True)  # per-bin weight sum over bands
        # band values -> bin envelope: mean magnitude of the band, spread by the triangles
        spread = torch.where(cover > 0, fb / cover.clamp_min(1e-12), torch.zeros_like(fb))
        # every buffer holds float32-representable values, so that casting the model to float32
        # and back (which the float64 computation below undoes) changes nothing
        r = lambda t: t.float().double()  # noqa: E731
        self.register_buffer("band_mean", r(1.0 / band.clamp_min(1e-12)), persistent=False)
        self.register_buffer("spread", r(spread.T.contiguous()), persistent=False)  # (n_freqs, n_mels)
        self.register_buffer("window", r(self.mel.spectrogram.window), persistent=False)
        self.register_buffer("mel_mean", torch.zeros(features.n_mels, dtype=torch.float64))
        self.register_buffer("mel_scale", torch.ones(features.n_mels, dtype=torch.float64))

    def _apply(self, fn, recurse=True):
        # the synthesiser always computes in float64 (phases, cumulative sums, the refinement):
        # a model cast to float32/bfloat16 moves these buffers but keeps their precision
        super()._apply(fn, recurse)
        for mod in self.modules():
            for name, buf in list(mod._buffers.items()):
                if buf is not None and buf.is_floating_point() and buf.dtype != torch.float64:
                    mod._buffers[name] = buf.double()
        return self

    def extra_repr(self) -> str:
        return (f"max_harmonics={self.max_harmonics}, voiced_noise={self.voiced_noise}, "
                f"refine={self.refine}")

    def set_mel_statistics(self, mean, scale) -> None:
        """The normalisation ``(mel - mean) / scale`` of the model's features (per band)."""
        with torch.no_grad():
            # float32-representable (see __init__)
            self.mel_mean.copy_(torch.as_tensor(mean, dtype=torch.float32).reshape(-1))
            self.mel_scale.copy_(torch.as_tensor(scale, dtype=torch.float32).reshape(-1))

    # -- spectra ------------------------------------------------------------------------------
    def _linear(self, mel: torch.Tensor) -> torch.Tensor:
        """The front end's band values (magnitude or power, before the log) of ``mel``."""
        c = self.features
        if c.log == "ln":
            return torch.exp(mel)
        if c.log == "log10":
            return torch.pow(10.0, mel)
        return mel.clamp_min(0)

    def envelope(self, mel: torch.Tensor) -> torch.Tensor:
        """Linear-frequency magnitude envelope ``(B, n_freqs, frames)`` of a front-end mel."""
        bands = self._linear(mel) * self.band_mean  # mean value per bin in each band
        env = torch.matmul(self.spread, bands)
        return env.clamp_min(0).sqrt() if self.features.power == 2 else env

    def _stft(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        c = self.features
        left, right = c.pad
        x = F.pad(x, (left, right + c.n_fft))
        return torch.stft(x, c.n_fft, c.hop_length, c.win_length, window=self.window,
                          center=False, return_complex=True)[..., :frames]

    def _istft(self, spec: torch.Tensor, frames: int) -> torch.Tensor:
        """Weighted overlap-add of ``spec`` on the front end's grid (the least-squares inverse)."""
        c = self.features
        left, _ = c.pad
        n = c.n_fft
        w = F.pad(self.window, ((n - self.window.shape[0]) // 2, n - self.window.shape[0]
                                - (n - self.window.shape[0]) // 2))
        seg = torch.fft.irfft(spec, n=n, dim=1) * w[None, :, None]  # (B, n_fft, frames)
        length = (frames - 1) * c.hop_length + n
        out = F.fold(seg, (1, length), (1, n), stride=(1, c.hop_length))[:, 0, 0]
        norm = F.fold((w * w)[None, :, None].expand(1, n, frames).contiguous(), (1, length),
                      (1, n), stride=(1, c.hop_length))[:, 0, 0]
        out = out / norm.clamp_min(1e-3 * float(norm.max()))
        total = frames * c.hop_length
        out = out[:, left: left + total]
        return F.pad(out, (0, total - out.shape[-1]))

    def _mel_of(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        c = self.features
        if c.pad_mode == "reflect" and x.shape[-1] <= max(c.pad):
            # too short to reflect-pad (a frame or so): zero-pad by whole hops and take the
            # frames of the original grid
            k = -(-c.n_fft // c.hop_length)
            m = self.mel(F.pad(x, (k * c.hop_length, k * c.hop_length)))[..., k:]
            return m[..., :frames]
        m = self.mel(x)
        if m.shape[-1] < frames:
            m = F.pad(m, (0, frames - m.shape[-1]), mode="replicate")
        return m[..., :frames]

    # -- synthesis ----------------------------------------------------------------------------
    def harmonics(self, env: torch.Tensor, f0: torch.Tensor) -> torch.Tensor:
        """The voiced part ``(B, frames * hop)`` from the envelope and F0 (Hz, 0 = unvoiced)."""
        c = self.features
        b, nf, frames = env.shape
        hop = c.hop_length
        voiced = (f0 > 0).to(env.dtype)
        filled = fill_unvoiced(f0)
        has = (filled > 0).to(env.dtype)
        filled = torch.where(filled > 0, filled, torch.full_like(filled, 100.0))
        bin_hz = c.sample_rate / c.n_fft
        k = torch.arange(1, self.max_harmonics + 1, dtype=env.dtype, device=env.device)
        # cum[:, j] = sum of bins 0..j-1: the magnitude integrated up to bin position j - 1/2
        cum = F.pad(torch.cumsum(env, dim=1), (0, 0, 1, 0))  # (B, n_freqs + 1, frames)

        def at(pos):  # cumulative magnitude at fractional bin position pos (B, H, frames)
            p = (pos + 0.5).clamp(0, nf)
            lo = p.floor().long().clamp(max=nf - 1)
            w = p - lo.to(p.dtype)
            return torch.gather(cum, 1, lo) * (1 - w) + torch.gather(cum, 1, lo + 1) * w

        centre = k[None, :, None] * filled[:, None, :] / bin_hz  # (B, H, frames) in bins
        half = 0.5 * filled[:, None, :] / bin_hz
        mass = at(centre + half) - at(centre - half)
        amp = mass / float(self.window.sum())
        nyq = 0.95 * c.sample_rate / 2
        ok = (k[None, :, None] * filled[:, None, :] < nyq).to(env.dtype)
        amp = amp * ok * (voiced * has)[:, None, :]
        # amplitudes from frame centres to samples (linear), phase from the filled F0 track
        lo, hi, w = frame_interpolation(frames, hop, env.device, env.dtype)
        phi = cumulative_phase(upsample_f0(filled, hop)[0], c.sample_rate)
        out = torch.zeros(b, frames * hop, dtype=env.dtype, device=env.device)
        for h in range(self.max_harmonics):  # one harmonic at a time: memory O(T)
            a = amp[:, h]
            if not bool((a > 0).any()):  # silent everywhere (above Nyquist for every F0)
                continue
            a_s = a[:, lo] * (1 - w) + a[:, hi] * w
            out = out + a_s * torch.sin(torch.remainder((h + 1) * phi, 2 * math.pi)).to(env.dtype)
        return out

    def noise(self, env: torch.Tensor, f0: torch.Tensor) -> torch.Tensor:
        """The noise part ``(B, frames * hop)``: the envelope in unvoiced frames (and
        ``voiced_noise`` times it above ``voiced_noise_hz`` in voiced ones), hashed phase."""
        c = self.features
        b, nf, frames = env.shape
        voiced = (f0 > 0).to(env.dtype)[:, None, :]
        hz = torch.arange(nf, dtype=env.dtype, device=env.device) * c.sample_rate / c.n_fft
        upper = (hz >= self.voiced_noise_hz).to(env.dtype)[None, :, None]
        mag = env * ((1 - voiced) + voiced * self.voiced_noise * upper)
        phase = _hash_phase(frames, nf, env.dtype, env.device)
        spec = torch.polar(mag, phase.expand_as(mag))
        return self._istft(spec, frames)

    def forward(self, mel: torch.Tensor, f0: torch.Tensor, normalized: bool = False) -> torch.Tensor:
        if mel.dim() == 2:
            mel = mel[None]
        if f0.dim() == 1:
            f0 = f0[None]
        out_dtype = mel.dtype if mel.dtype.is_floating_point else torch.float32
        mel = mel.double()
        if normalized:
            mel = mel * self.mel_scale[None, :, None] + self.mel_mean[None, :, None]
        f0 = f0.to(device=mel.device, dtype=torch.float64)
        frames = mel.shape[-1]
        env = self.envelope(mel)
        x = self.harmonics(env, f0) + self.noise(env, f0)
        target = self._linear(mel)
        for _ in range(self.refine):
            ratio = target / self._linear(self._mel_of(x, frames)).clamp_min(1e-12)
            if self.features.power == 2:
                ratio = ratio.sqrt()
            ratio = ratio.clamp(1.0 / self.max_gain, self.max_gain)
            gain = torch.matmul(self.spread, ratio)  # band gains spread onto the bins
            x = self._istft(self._stft(x, frames) * gain, frames)
        return x.to(out_dtype)


# -- source-filter conditioning shared by the flow vocoders (WaveGlow, IAF students) ----------
def excitation_channels(cfg) -> int:
    """Excitation channels of a config with the source-filter fields: harmonics + the voicing
    flag (+ the source signal with ``source: mel``); 0 without excitation."""
    if not cfg.excitation_harmonics:
        return 0
    return cfg.excitation_harmonics + 1 + (cfg.source == "mel")


def check_source_filter(cfg) -> None:
    """Validate (and normalise in place) the source-filter fields of a model config:
    ``excitation_harmonics``, ``sample_rate``, ``source`` (``none``/``mel``),
    ``source_voiced_noise`` and ``source_features`` (the front end's MelConfig dict, which
    must agree with ``n_mels``, ``hop_length`` and ``sample_rate``)."""
    name = type(cfg).__name__
    if cfg.source not in ("none", "mel"):
        raise ValueError(f"source must be 'none' or 'mel', got {cfg.source!r}")
    v = cfg.source_voiced_noise
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= float(v) <= 1:
        raise ValueError(f"{name}.source_voiced_noise must be in [0, 1], got {v!r}")
    cfg.source_voiced_noise = float(v)
    if cfg.source == "mel":
        if not cfg.excitation_harmonics:
            raise ValueError("source: mel needs F0, i.e. excitation_harmonics > 0")
        if not isinstance(cfg.source_features, dict):
            raise ValueError("source: mel needs source_features (the front end's MelConfig "
                             "as a dict; from_dict fills it from the features)")
        fe = MelConfig.from_dict(cfg.source_features)
        if (fe.n_mels, fe.hop_length, fe.sample_rate) != (cfg.n_mels, cfg.hop_length, cfg.sample_rate):
            raise ValueError("source_features disagree with the model's n_mels, hop_length or "
                             "sample_rate")
        cfg.source_features = fe.to_dict()


class SourceFilterMixin:
    """F0-driven conditioning for a mel vocoder whose config has the source-filter fields
    (``excitation_harmonics``, ``pitch_channels``, ``pitch_layers``, ``sample_rate``,
    ``source``, ``source_harmonics``, ``source_voiced_noise``, ``source_refine``,
    ``source_features``): builds ``excitation`` (:class:`~vocoflow.nets.excitation.
    HarmonicExcitation`), ``pitch`` (:class:`~vocoflow.nets.pitch.PitchPredictor`) and
    ``source`` (:class:`MelSource`, the model's mean), each ``None`` when off."""

    def _build_source_filter(self, cfg) -> None:
        from vocoflow.nets.excitation import HarmonicExcitation
        from vocoflow.nets.pitch import PitchPredictor

        self.excitation = self.pitch = self.source = None
        if cfg.excitation_harmonics:
            self.excitation = HarmonicExcitation(cfg.sample_rate, cfg.hop_length,
                                                 cfg.excitation_harmonics)
            self.pitch = PitchPredictor(cfg.n_mels, cfg.pitch_channels, cfg.pitch_layers)
        if cfg.source == "mel":
            self.source = MelSource(cfg.source_features, max_harmonics=cfg.source_harmonics,
                                    voiced_noise=cfg.source_voiced_noise, refine=cfg.source_refine)

    @property
    def uses_excitation(self) -> bool:
        return self.excitation is not None

    def condition(self, mel: torch.Tensor, excitation: torch.Tensor | None = None) -> torch.Tensor:
        """The upsampled mel ``(B, n_mels [+ excitation channels], frames * hop)``: a model with
        an excitation stacks it (``(B, C, frames * hop)``, from :meth:`make_excitation`) on
        the mel."""
        up = super().condition(mel)
        if self.excitation is None:
            return up
        if excitation is None:
            raise ValueError(f"this {type(self).__name__} is conditioned on an excitation: give "
                             "f0 or excitation")
        want = (up.shape[0], self.config.excitation_channels, up.shape[-1])
        if tuple(excitation.shape) != want:
            raise ValueError(f"excitation must be {want}, got {tuple(excitation.shape)}")
        return torch.cat([up, excitation.to(device=up.device, dtype=up.dtype)], dim=1)

    def predict_f0(self, mel: torch.Tensor) -> torch.Tensor:
        """F0 in Hz ``(B, frames)`` (``0`` = unvoiced) predicted from the mel by the model's
        pitch predictor (only models with an excitation)."""
        if self.pitch is None:
            raise ValueError(f"this {type(self).__name__} has no excitation, hence no pitch predictor")
        if mel.dim() == 2:
            mel = mel[None]
        return self.pitch.predict_f0(mel)

    def make_excitation(self, mel: torch.Tensor, f0: torch.Tensor | None = None) -> torch.Tensor | None:
        """The sample-rate excitation ``(B, C, frames * hop)`` for ``mel`` from ``f0``
        ``(B, frames)`` in Hz, or from the predicted F0 when ``f0`` is None; with ``source:
        mel`` its last channel is the mel source. ``None`` for a model without excitation (then
        ``f0`` must be None or is ignored)."""
        if self.excitation is None:
            return None
        if f0 is None:
            f0 = self.predict_f0(mel)
        f0 = torch.as_tensor(f0, device=mel.device)
        if f0.dim() == 1:
            f0 = f0[None]
        if f0.dim() != 2 or f0.shape[0] != mel.shape[0] or f0.shape[1] != mel.shape[-1]:
            raise ValueError(f"f0 must be (B, frames) = {(mel.shape[0], mel.shape[-1])} to match "
                             f"the mel, got {tuple(f0.shape)}")
        # at least float32: a float16 sample position or F0 would detune the harmonics
        dtype = torch.float64 if mel.dtype == torch.float64 else torch.float32
        exc = self.excitation(f0.to(dtype))
        if self.source is not None:
            with torch.no_grad():  # parameter-free: a function of the conditioning only
                src = self.source(mel.detach(), f0.detach(), normalized=True)
            exc = torch.cat([exc, src[:, None].to(exc.dtype)], dim=1)
        return exc.to(mel.dtype)

    def _source_of(self, excitation: torch.Tensor | None) -> torch.Tensor | None:
        """The model's mean ``(B, 1, T)`` (the source channel of the excitation), or None."""
        if self.source is None:
            return None
        return excitation[:, -1:]
