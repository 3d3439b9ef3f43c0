"""Parallel students: stacks of inverse autoregressive flows (Parallel WaveNet / ClariNet).

:class:`IAFStudent` turns noise into audio in one parallel pass: ``z`` (logistic or Gaussian,
one value per sample) goes through ``len(flow_layers)`` :class:`~vocoflow.flows.IAF` steps, each
``x_t = map(x_t; theta_t)`` with ``theta_t = WN(x_<t, mel)`` from a strictly causal
:class:`~vocoflow.nets.WN` (dilation stacks, upsampled mel as conditioning). The conditioner of
every flow runs once per synthesis, whatever the length: there is no loop over time.

Per-step maps: ``affine`` (van den Oord et al., 2018; Ping et al., 2019), ``additive``,
``mixlogistic`` (Flow++'s monotone mixture-of-logistics CDF law, non-affine) or a composition,
e.g. ``[mixlogistic, affine]`` (:class:`~vocoflow.flows.ChainMap`). The log-determinant of
the sampling direction is exact: each map's elementwise ``log|dx_t/dz_t|`` (the Jacobian of an
IAF is triangular). For an all-affine stack the whole student is one affine map per step,
``x_t = z_t * s_t + mu_t`` with ``(mu_t, s_t)`` functions of ``z_<t``; :meth:`IAFStudent.forward`
returns these, which is what ClariNet's closed-form KL needs.

Default layout (Parallel WaveNet): 4 flows of 10, 10, 10 and 30 layers, 64 channels, kernel 3,
dilations restarting every 10 layers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from vocoflow.flows import IAF, Logistic, Normal, gaussian_log_prob
from vocoflow.flows.elementwise import (
    AffineMap,
    ChainMap,
    ElementwiseMap,
    MixLogisticMap,
    make_map,
)
from vocoflow.nets.upsample import MelUpsampler
from vocoflow.nets.wavenet import BlockedWN

from .base import MelModelConfig, MelModelMixin, check_int_fields, resolve_config
from .source import SourceFilterMixin, check_source_filter, excitation_channels

__all__ = ["StudentConfig", "IAFStudent", "MAPS", "NOISES"]

MAPS = ("affine", "additive", "mixlogistic")
NOISES = ("gaussian", "logistic")


@dataclass
class StudentConfig(MelModelConfig, type_name="iaf_student"):
    """Hyper-parameters of :class:`IAFStudent`.

    * ``flow_layers``: WN layers of each IAF flow (the flow count is its length).
    * ``channels``, ``kernel_size``, ``dilation_cycle``: of every WN conditioner.
    * ``map``: ``affine``, ``additive``, ``mixlogistic`` or a list of them (a composition,
      applied in order); ``affine_scale``/``affine_clamp`` choose the affine log-scale
      parametrisation, ``mix_components`` the logistics of ``mixlogistic``.
    * ``noise``: base distribution, ``gaussian`` (ClariNet) or ``logistic`` (Parallel WaveNet).
    * ``init_scale``: the untrained student outputs ``init_scale * z`` (the last flow's scale
      bias is set so); 1.0 is the plain identity initialisation.
    * Source-filter options, as in :class:`~vocoflow.vocoders.WaveGlowConfig`:
      ``excitation_harmonics`` > 0 adds the harmonic excitation of F0 (and a pitch predictor,
      ``pitch_channels``/``pitch_layers``, which distillation copies from the teacher) to every
      flow's conditioning; ``source: mel`` makes the mel source the student's mean (``audio =
      IAF(z) + source``, an exact translation), so that an untrained student synthesises it.

    >>> StudentConfig(flow_layers=[2, 2], map=["mixlogistic", "affine"]).n_flows
    2
    """

    flow_layers: list = field(default_factory=lambda: [10, 10, 10, 30])
    channels: int = 64
    kernel_size: int = 3
    dilation_cycle: int = 10
    map: str | list = "affine"
    affine_scale: str = "softclamp"
    affine_clamp: float = 5.0
    mix_components: int = 4
    noise: str = "gaussian"
    init_scale: float = 1.0
    upsample: str = "transpose"
    upsample_kernel: int | None = None
    sample_rate: int = 22050
    excitation_harmonics: int = 0
    pitch_channels: int = 128
    pitch_layers: int = 4
    source: str = "none"
    source_harmonics: int = 96
    source_voiced_noise: float = 0.0
    source_refine: int = 2
    source_features: dict | None = None

    def __post_init__(self):
        check_int_fields(self, ("excitation_harmonics", "source_refine"), minimum=0)
        check_int_fields(self, ("n_mels", "hop_length", "channels", "kernel_size", "dilation_cycle",
                                "mix_components", "sample_rate", "pitch_channels", "pitch_layers",
                                "source_harmonics"))
        if isinstance(self.flow_layers, int) or not self.flow_layers:
            raise ValueError(f"StudentConfig.flow_layers must be a non-empty list, got "
                             f"{self.flow_layers!r}")
        self.flow_layers = [int(v) for v in self.flow_layers]
        if min(self.flow_layers) < 1:
            raise ValueError(f"StudentConfig.flow_layers must be positive, got {self.flow_layers}")
        maps = [self.map] if isinstance(self.map, str) else list(self.map)
        if not maps or any(m not in MAPS for m in maps):
            raise ValueError(f"StudentConfig.map must be one of {MAPS} or a list of them, "
                             f"got {self.map!r}")
        self.map = maps[0] if len(maps) == 1 else maps
        if self.noise not in NOISES:
            raise ValueError(f"StudentConfig.noise must be one of {NOISES}, got {self.noise!r}")
        if self.affine_scale not in ("exp", "softclamp", "sigmoid"):
            raise ValueError(f"affine_scale must be exp, softclamp or sigmoid, got "
                             f"{self.affine_scale!r}")
        self.affine_clamp = float(self.affine_clamp)
        self.init_scale = float(self.init_scale)
        if not self.init_scale > 0:
            raise ValueError(f"init_scale must be > 0, got {self.init_scale}")
        if self.upsample not in ("transpose", "repeat"):
            raise ValueError(f"upsample must be 'transpose' or 'repeat', got {self.upsample!r}")
        if self.upsample_kernel is not None:
            self.upsample_kernel = int(self.upsample_kernel)
        check_source_filter(self)

    @property
    def excitation_channels(self) -> int:
        return excitation_channels(self)

    @property
    def n_flows(self) -> int:
        return len(self.flow_layers)

    @property
    def maps(self) -> list[str]:
        return [self.map] if isinstance(self.map, str) else list(self.map)

    @property
    def affine(self) -> bool:
        """Every step is affine (or a shift): the student is one affine map per time step."""
        return all(m in ("affine", "additive") for m in self.maps)


def _scale_bias(m: ElementwiseMap, log_s: float):
    """``(channel offset in the map's params, raw value)`` that gives the map the log-scale
    ``log_s`` when everything else is zero; ``None`` when the map has no scale."""
    if isinstance(m, AffineMap):
        if m.scale == "exp":
            return 0, log_s
        if m.scale == "softclamp":
            if abs(log_s) >= m.clamp:
                raise ValueError(f"init_scale exp({log_s:.3g}) is outside the soft clamp "
                                 f"exp(+-{m.clamp})")
            return 0, m.clamp * math.atanh(log_s / m.clamp)
        s = math.exp(log_s) / 2
        if not 0 < s < 1:
            raise ValueError("init_scale must be < 2 for the sigmoid scale")
        return 0, math.log(s) - math.log1p(-s)
    if isinstance(m, MixLogisticMap):
        if abs(log_s) >= m.max_log_a:
            raise ValueError(f"init_scale exp({log_s:.3g}) is outside exp(+-{m.max_log_a})")
        return 3 * m.k, m.max_log_a * math.atanh(log_s / m.max_log_a)
    if isinstance(m, ChainMap):
        off = 0
        found = None
        for sub in m.maps:
            r = _scale_bias(sub, log_s)
            if r is not None:
                found = (off + r[0], r[1])
            off += sub.n_params
        return found
    return None


class IAFStudent(SourceFilterMixin, MelModelMixin, nn.Module):
    """A Parallel WaveNet / ClariNet student (van den Oord et al., 2018, "Parallel WaveNet";
    Ping et al., 2019, "ClariNet"): noise to audio through a stack of mel-conditioned IAFs.

    * ``forward(noise (B, T), mel (B, n_mels, frames), sigma=1.0) -> dict``: the training pass
      (reparameterised sample with its exact density): ``audio`` ``(B, T)``; ``z`` the base
      noise; ``logdet`` the per-step ``log|dx_t/dz_t|`` ``(B, T)``; ``log_q`` the per-step
      ``log p_z(z_t) - logdet_t`` (summing over ``t`` gives ``log q(audio)``); for an affine
      stack also ``mu``/``log_scale`` ``(B, T)`` with ``x_t = mu_t + exp(log_scale_t) e_t``,
      ``e_t`` standard base noise (``sigma`` included).
    * ``infer(mel, sigma=1.0, noise=None, generator=None) -> (B, frames * hop)``: synthesis,
      one conditioner evaluation per flow. ``noise`` is unit *normal* noise (the
      :class:`~vocoflow.vocoders.Vocoder` convention); a logistic student maps it to logistic
      noise by the exact quantile transform ``logit(Phi(n))``.
    * ``log_prob(audio, mel, sigma=1.0) -> (B,)``: ``log q(audio | mel)`` by inverting the IAFs
      (sequential: ``T`` conditioner evaluations per flow; for tests and small inputs).

    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> s = IAFStudent(n_mels=4, hop_length=8, flow_layers=[2, 3], channels=8, map="mixlogistic")
    >>> mel = torch.randn(2, 4, 3)
    >>> s.infer(mel).shape
    torch.Size([2, 24])
    >>> out = s(torch.randn(2, 24), mel)
    >>> sorted(out), out["log_q"].shape
    (['audio', 'log_q', 'logdet', 'z'], torch.Size([2, 24]))
    """

    def __init__(self, config: StudentConfig | dict | None = None, **overrides):
        super().__init__()
        self.config = cfg = resolve_config(StudentConfig, config, overrides)
        self.upsample = MelUpsampler(cfg.n_mels, cfg.hop_length, cfg.upsample, cfg.upsample_kernel)
        self._build_source_filter(cfg)
        self.flows = nn.ModuleList(
            IAF(1, map=self._make_map(), conditioner=self._wn_factory(layers),
                cond_channels=cfg.n_mels + cfg.excitation_channels)
            for layers in cfg.flow_layers)
        self.base = Normal() if cfg.noise == "gaussian" else Logistic()
        if cfg.init_scale != 1.0:
            last = self.flows[-1]
            r = _scale_bias(last.map, math.log(cfg.init_scale))
            if r is None:
                raise ValueError(f"init_scale needs a map with a scale, not {cfg.map!r}")
            with torch.no_grad():
                last.net.end.bias[r[0]] = r[1]

    def _make_map(self) -> ElementwiseMap:
        cfg = self.config

        def one(kind):
            if kind == "affine":
                return AffineMap(scale=cfg.affine_scale, clamp=cfg.affine_clamp)
            if kind == "mixlogistic":
                return MixLogisticMap(n_components=cfg.mix_components)
            return make_map(kind)

        maps = [one(k) for k in cfg.maps]
        return maps[0] if len(maps) == 1 else ChainMap(maps)

    def _wn_factory(self, layers: int):
        cfg = self.config

        def make(in_ch, out_ch, cond_ch):
            return BlockedWN(in_ch, out_ch, cond_ch, n_layers=layers, n_channels=cfg.channels,
                             kernel_size=cfg.kernel_size, causal=True,
                             dilation_cycle=cfg.dilation_cycle)

        return make

    # -- information --------------------------------------------------------------------------
    @property
    def is_affine(self) -> bool:
        return self.config.affine

    def conditioners(self) -> list[nn.Module]:
        return [f.net for f in self.flows]

    def macs_per_sample(self) -> float:
        """Multiply-accumulates of synthesis per output sample (weights only; analytic)."""
        return sum(f.net.macs_per_step() for f in self.flows) + self.upsample.macs_per_sample()

    @property
    def receptive_field(self) -> int:
        """Past noise samples one output sample depends on (plus itself)."""
        return 1 + sum(f.net.context[0] for f in self.flows)

    @property
    def context_frames(self) -> int:
        """Frames of context after which a sample no longer depends on the mel or noise (the
        causal receptive field of the stack plus the upsampler's); chunked synthesis with it
        equals unchunked synthesis up to rounding."""
        return math.ceil(self.receptive_field / self.hop_length) + max(self.upsample.context_frames)

    # -- the model ----------------------------------------------------------------------------
    def _conditioning(self, mel, f0=None, excitation=None):
        """``(cond, source or None)`` for a pass: the excitation from ``f0`` (or the predicted F0)
        unless given ready-made."""
        if excitation is None and self.excitation is not None:
            excitation = self.make_excitation(mel, f0)
        return self.condition(mel, excitation), self._source_of(excitation)

    def base_noise(self, noise: torch.Tensor) -> torch.Tensor:
        """Unit-normal noise to the student's standard base noise (identity for ``gaussian``,
        ``logit(Phi(n))`` for ``logistic``: an exact quantile transform)."""
        if self.config.noise == "gaussian":
            return noise
        return torch.special.log_ndtr(noise) - torch.special.log_ndtr(-noise)

    def _base_logpdf(self, z: torch.Tensor, sigma: float) -> torch.Tensor:
        """Elementwise log-density of the base at temperature ``sigma``."""
        if self.config.noise == "gaussian":
            return gaussian_log_prob(z, log_scale=math.log(sigma))
        u = z / sigma
        return -u - 2 * torch.nn.functional.softplus(-u) - math.log(sigma)

    def _noise(self, mel, noise, generator):
        b, t = mel.shape[0], mel.shape[-1] * self.hop_length
        if noise is None:
            noise = torch.randn(b, t, generator=generator, dtype=mel.dtype,
                                device=generator.device if generator is not None else mel.device)
        if noise.dim() == 3 and noise.shape[1] == 1:
            noise = noise[:, 0]
        if tuple(noise.shape) != (b, t):
            raise ValueError(f"noise must have shape {(b, t)} (unit normal, sample layout), got "
                             f"{tuple(noise.shape)}")
        return noise.to(device=mel.device, dtype=mel.dtype)

    def forward(self, noise: torch.Tensor | None, mel: torch.Tensor, sigma: float = 1.0,
                data: torch.Tensor | None = None, f0: torch.Tensor | None = None) -> dict:
        """The sampling pass with its exact density (see the class docstring).

        With ``data`` (audio ``(B, T)``) it instead returns ``{"log_prob": log q(data | mel)}``
        (:meth:`log_prob`; sequential), so that a DDP-wrapped student can be trained on outside
        samples (forward KL) through its ``forward``. A student with an excitation takes ``f0``
        ``(B, frames)`` in Hz (default: its predicted F0); with ``source: mel`` the source is
        added to the audio and to ``mu``."""
        if data is not None:
            return {"log_prob": self.log_prob(data, mel, sigma, f0=f0)}
        if noise is None:
            raise ValueError("the sampling pass needs noise (B, T)")
        noise = self._noise(mel, noise, None)
        z = self.base_noise(noise) * sigma
        cond, src = self._conditioning(mel, f0)
        x = z[:, None]
        logdet = torch.zeros_like(x)
        affine = self.is_affine
        mu = torch.zeros_like(x) if affine else None
        for flow in self.flows:
            params = flow.net(x, cond)
            x, ld = flow.map.forward(x, params)
            logdet = logdet + ld
            if affine:
                # x_new = x * s + t, so (mu, s) of the whole stack compose the same way
                t = params[:, 1:2] if isinstance(flow.map, AffineMap) else params
                mu = mu * torch.exp(ld) + t
        if src is not None:  # a translation: log q is unchanged
            x = x + src.to(x.dtype)
            if affine:
                mu = mu + src.to(mu.dtype)
        out = {"audio": x[:, 0], "z": z, "logdet": logdet[:, 0],
               "log_q": self._base_logpdf(z, sigma) - logdet[:, 0]}
        if affine:
            out["mu"] = mu[:, 0]
            out["log_scale"] = logdet[:, 0] + math.log(sigma)
        return out

    def infer(self, mel: torch.Tensor, sigma: float = 1.0, noise: torch.Tensor | None = None,
              generator: torch.Generator | None = None, f0: torch.Tensor | None = None,
              excitation: torch.Tensor | None = None) -> torch.Tensor:
        """Synthesise ``(B, frames * hop)`` from ``mel (B, n_mels, frames)`` in one pass (a
        student with an excitation: from ``f0`` or the predicted F0, or a ready ``excitation``)."""
        if mel.dim() == 2:
            mel = mel[None]
        z = self.base_noise(self._noise(mel, noise, generator)) * sigma
        cond, src = self._conditioning(mel, f0, excitation)
        x = z[:, None]
        for flow in self.flows:
            x, _ = flow.inverse(x, cond)
        if src is not None:
            x = x + src.to(x.dtype)
        return x[:, 0]

    def log_prob(self, audio: torch.Tensor, mel: torch.Tensor, sigma: float = 1.0,
                 f0: torch.Tensor | None = None) -> torch.Tensor:
        """``log q(audio | mel)``, ``(B,)``, by inverting every IAF (sequential and slow)."""
        if audio.dim() == 2:
            audio = audio[:, None]
        cond, src = self._conditioning(mel, f0)
        x, total = audio.to(mel.dtype), audio.new_zeros(audio.shape[0], dtype=mel.dtype)
        if src is not None:
            x = x - src.to(x.dtype)
        for flow in reversed(self.flows):
            x, ld = flow(x, cond)
            total = total + ld
        return self._base_logpdf(x[:, 0], sigma).sum(dim=-1) + total
