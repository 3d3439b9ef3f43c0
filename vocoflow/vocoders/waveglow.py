"""WaveGlow (Prenger et al., 2019): a mel-conditioned Glow over groups of audio samples.

The whole model is one bijector from :mod:`vocoflow.flows`::

    Sequential(Squeeze(n_group),
               [Invertible1x1Conv, Coupling] x n_early_every,
               Split(n_early_size, Sequential([Invertible1x1Conv, Coupling] x n_early_every,
                                              Split(n_early_size, ...))))

so audio ``(B, T)`` becomes a latent ``(B, n_group, T / n_group)``; the early outputs are the
first ``n_early_size`` channels at each level (WaveGlow's layout). Every coupling is conditioned
on the mel upsampled to the sample rate and squeezed the same way as the audio:
``(B, n_mels, T) -> (B, n_mels * n_group, T / n_group)``.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import nn

from vocoflow.flows import (
    AdditiveCoupling,
    AffineCoupling,
    Invertible1x1Conv,
    MixLogisticCoupling,
    Normal,
    ResidualBlock,
    Sequential,
    Split,
    Squeeze,
    build_base,
    gaussian_log_prob,
)
from vocoflow.nets.upsample import MelUpsampler
from vocoflow.nets.wavenet import WN

from .base import MelModelConfig, MelModelMixin, check_int_fields, config_from_dict, resolve_config
from .source import SourceFilterMixin, check_source_filter, excitation_channels

__all__ = ["WaveGlowConfig", "WaveGlow", "COUPLINGS", "bf16_conditioners"]

COUPLINGS = ("affine", "additive", "mixlogistic", "residual")


@dataclass
class WaveGlowConfig(MelModelConfig, type_name="waveglow"):
    """Hyper-parameters of :class:`WaveGlow` (defaults: NVIDIA's published model).

    ``n_mels`` and ``hop_length`` must match the feature front end (:class:`MelConfig`);
    :meth:`from_dict` fills them from it. ``coupling`` is ``affine`` (RealNVP/WaveGlow; the
    scale parametrisation is ``affine_scale``: ``exp`` as in WaveGlow or the bounded
    ``softclamp``), ``additive`` (NICE), ``mixlogistic`` (Flow++, ``mix_components``) or
    ``residual`` (an i-ResNet :class:`~vocoflow.flows.ResidualBlock` on all channels,
    ``residual_*`` fields; ``residual_logdet``: ``exact``, ``series`` or ``unbiased``).
    ``lu`` selects the LU-parametrised invertible 1x1 convolution. ``upsample`` is
    ``transpose`` (learned, kernel ``upsample_kernel``, default ``4 * hop``) or ``repeat``;
    ``upsample_crop`` is ``center`` (frames centred on ``[t * hop, (t + 1) * hop)``, vocoflow's
    front ends) or ``start`` (NVIDIA's ``infer``, for mels centred on ``t * hop``).
    ``alternate_halves``: coupling ``k`` keeps the second half of the channels fixed when ``k``
    is odd (NVIDIA's earliest ``glow_old`` models); by default every coupling keeps the first.

    Source-filter options (all off by default, i.e. NVIDIA's model):

    * ``excitation_harmonics`` > 0: every coupling's conditioner also gets a harmonic excitation
      (:class:`~vocoflow.nets.excitation.HarmonicExcitation`: that many harmonics of F0 with
      cumulative phase, plus the voicing flag) at the sample rate, squeezed like the audio; the
      model then carries a :class:`~vocoflow.nets.pitch.PitchPredictor` (``pitch_channels``,
      ``pitch_layers``) so that synthesis from a mel alone predicts F0. ``sample_rate`` (from the
      features) sets the harmonics' frequencies.
    * ``prior: mel``: a data-dependent base distribution ``N(0, (sigma * s_t)^2)`` whose
      per-frame scale ``log s_t`` is a learned linear function of that frame's mel (zero at
      initialisation, soft-clamped to ``+-prior_clamp``), in the spirit of PriorGrad
      (Lee et al., 2022); its log-density is exact, so NLL stays exact.
    * ``base``: the standard base distribution of the latent, a name of
      :data:`~vocoflow.flows.BASE_DISTRIBUTIONS` (``normal``, WaveGlow's; ``student_t``, heavy
      tails with ``base_df`` degrees of freedom (default 5), learned with ``learn_df``;
      ``gaussian_copula``, fixed-df t marginals correlated across the ``n_group`` channels). The latent is
      ``sigma * s_t * e`` with ``e`` a standard base draw (``s_t`` the mel prior's scale, or 1),
      so sigma (the temperature) scales the base draws and the log-density stays exact:
      ``log p(z) = log p_e(z / (sigma s_t)) - sum log(sigma s_t)``.
    * ``source: mel`` (needs ``excitation_harmonics`` > 0): the flow's *mean* is the parameter-free
      harmonic-plus-noise synthesis of the mel and F0 (:class:`~vocoflow.vocoders.source.MelSource`,
      ``source_harmonics``, ``source_voiced_noise``, ``source_refine``): the flow models ``audio
      - source``, an exact translation given the conditioning (log-determinant 0), and the
      source is also one more excitation channel. At initialisation (identity couplings) the
      model synthesises the source; training learns the rest. ``source_features`` is the
      front end's :class:`~vocoflow.audio.MelConfig` dict (filled from the features).
    * ``cond_proj`` > 0: one 1x1 convolution shared by all couplings first maps the squeezed
      conditioning (``(n_mels + excitation) * n_group`` channels) to ``cond_proj`` channels, so
      each coupling's per-layer conditioning GEMM is that much smaller.

    >>> cfg = WaveGlowConfig(n_flows=4, n_early_every=2)
    >>> WaveGlowConfig.from_dict(cfg.to_dict()) == cfg
    True
    >>> cfg.level_channels()
    [8, 6]
    """

    n_mels: int = 80
    hop_length: int = 256
    n_group: int = 8
    n_flows: int = 12
    n_early_every: int = 4
    n_early_size: int = 2
    wn_layers: int = 8
    wn_channels: int = 256
    wn_kernel_size: int = 3
    lu: bool = False
    coupling: str = "affine"
    affine_scale: str = "softclamp"
    affine_clamp: float = 5.0
    mix_components: int = 4
    residual_hidden: int = 64
    residual_layers: int = 3
    residual_logdet: str = "series"
    residual_coeff: float = 0.97
    upsample: str = "transpose"
    upsample_kernel: int | None = None
    upsample_crop: str = "center"
    alternate_halves: bool = False
    sample_rate: int = 22050
    excitation_harmonics: int = 0
    pitch_channels: int = 128
    pitch_layers: int = 4
    prior: str = "none"
    prior_clamp: float = 12.0
    cond_proj: int = 0
    base: str = "normal"
    base_df: float | None = None
    learn_df: bool = False
    source: str = "none"
    source_harmonics: int = 96
    source_voiced_noise: float = 0.0
    source_refine: int = 2
    source_features: dict | None = None

    def __post_init__(self):
        check_int_fields(self, ("n_mels", "hop_length", "n_group", "n_flows", "wn_layers",
                                "wn_channels", "wn_kernel_size", "mix_components", "residual_hidden",
                                "residual_layers", "sample_rate", "pitch_channels", "pitch_layers",
                                "source_harmonics"))
        check_int_fields(self, ("n_early_every", "n_early_size", "excitation_harmonics", "cond_proj",
                                "source_refine"), minimum=0)
        self.lu = bool(self.lu)
        self.affine_clamp = float(self.affine_clamp)
        self.residual_coeff = float(self.residual_coeff)
        self.prior_clamp = float(self.prior_clamp)
        if self.prior not in ("none", "mel"):
            raise ValueError(f"prior must be 'none' or 'mel', got {self.prior!r}")
        self.learn_df = bool(self.learn_df)
        check_source_filter(self)
        if self.base_df is not None:
            if isinstance(self.base_df, bool) or not isinstance(self.base_df, (int, float)):
                raise ValueError(f"WaveGlowConfig.base_df must be a number > 0, got {self.base_df!r}")
            self.base_df = float(self.base_df)
        build_base(self.base, self.base_df, self.learn_df, self.n_group)  # validates the choice
        if self.upsample_kernel is not None:
            self.upsample_kernel = int(self.upsample_kernel)
        if self.coupling not in COUPLINGS:
            raise ValueError(f"coupling must be one of {COUPLINGS}, got {self.coupling!r}")
        if self.affine_scale not in ("exp", "softclamp", "sigmoid"):
            raise ValueError(f"affine_scale must be exp, softclamp or sigmoid, got {self.affine_scale!r}")
        if self.upsample not in ("transpose", "repeat"):
            raise ValueError(f"upsample must be 'transpose' or 'repeat', got {self.upsample!r}")
        if self.upsample_crop not in ("center", "start"):
            raise ValueError(f"upsample_crop must be 'center' or 'start', got {self.upsample_crop!r}")
        self.alternate_halves = bool(self.alternate_halves)
        if self.hop_length % self.n_group:
            raise ValueError(f"hop_length {self.hop_length} must be a multiple of n_group "
                             f"{self.n_group} (so that every frame is whole groups of samples)")
        if self.wn_kernel_size % 2 == 0:
            raise ValueError(f"wn_kernel_size must be odd, got {self.wn_kernel_size}")
        if self.level_channels()[-1] < 2:
            raise ValueError(f"n_group {self.n_group} leaves {self.level_channels()[-1]} channel(s) "
                             f"after the early outputs; couplings need at least 2")

    # -- derived layout -----------------------------------------------------------------------
    def _splits(self) -> bool:
        return self.n_early_every > 0 and self.n_early_size > 0

    def level_channels(self) -> list[int]:
        """Channels seen by each level (a new level starts after every early output)."""
        if not self._splits():
            return [self.n_group]
        n_levels = (self.n_flows - 1) // self.n_early_every + 1
        return [self.n_group - i * self.n_early_size for i in range(n_levels)]

    def flow_channels(self) -> list[int]:
        """Channels of each of the ``n_flows`` steps."""
        if not self._splits():
            return [self.n_group] * self.n_flows
        return [self.n_group - (k // self.n_early_every) * self.n_early_size
                for k in range(self.n_flows)]

    @property
    def excitation_channels(self) -> int:
        return excitation_channels(self)

    @property
    def squeezed_cond_channels(self) -> int:
        """Channels of the squeezed mel (+ excitation) before the optional projection."""
        return (self.n_mels + self.excitation_channels) * self.n_group

    @property
    def cond_channels(self) -> int:
        """Conditioning channels every coupling sees."""
        return self.cond_proj or self.squeezed_cond_channels

    # -- (de)serialisation --------------------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict, features=None) -> "WaveGlowConfig":
        """Build from a dict (``type: waveglow`` allowed and ignored). ``features`` (a
        :class:`~vocoflow.audio.MelConfig` or dict) supplies ``n_mels``/``hop_length`` when absent
        and must agree with them when present."""
        return config_from_dict(cls, data, "waveglow", features)


class WaveGlow(SourceFilterMixin, MelModelMixin, nn.Module):
    """WaveGlow (Prenger, Valle & Catanzaro, 2019, "WaveGlow: A Flow-based Generative Network
    for Speech Synthesis"): Glow-style invertible 1x1 convolutions and WaveNet-conditioned
    couplings over groups of ``n_group`` samples, with early outputs.

    * ``model(audio (B, T), mel (B, n_mels, frames)) -> (z, logdet)`` with ``T = frames * hop``;
      ``z`` is ``(B, n_group, T / n_group)``.
    * ``log_prob(audio, mel, sigma)``: ``log p(audio | mel)`` in nats, ``(B,)``.
    * ``nll(audio, mel, sigma)``: mean negative log-likelihood in nats per sample.
    * ``infer(mel, sigma=0.6, noise=None, generator=None) -> audio (B, frames * hop)``.

    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> m = WaveGlow(n_mels=8, hop_length=16, n_group=4, n_flows=2, n_early_every=1,
    ...              n_early_size=1, wn_layers=2, wn_channels=8)
    >>> audio, mel = torch.randn(2, 64), torch.randn(2, 8, 4)
    >>> z, logdet = m(audio, mel)
    >>> z.shape, logdet.shape, m.infer(mel).shape
    (torch.Size([2, 4, 16]), torch.Size([2]), torch.Size([2, 64]))
    >>> torch.allclose(m.infer(mel, noise=z, sigma=1.0), audio, atol=1e-5)
    True
    """

    def __init__(self, config: WaveGlowConfig | dict | None = None, **overrides):
        super().__init__()
        self.config = cfg = resolve_config(WaveGlowConfig, config, overrides)
        self.upsample = MelUpsampler(cfg.n_mels, cfg.hop_length, cfg.upsample, cfg.upsample_kernel,
                                     crop=cfg.upsample_crop)
        self.cond_proj = self.prior_net = None
        self._build_source_filter(cfg)
        if cfg.cond_proj:
            self.cond_proj = nn.Conv1d(cfg.squeezed_cond_channels, cfg.cond_proj, 1)
        if cfg.prior == "mel":
            self.prior_net = nn.Conv1d(cfg.n_mels, 1, 1)
            nn.init.zeros_(self.prior_net.weight)
            nn.init.zeros_(self.prior_net.bias)
        self.base = build_base(cfg.base, cfg.base_df, cfg.learn_df, cfg.n_group)
        self.bijector = self._build()

    # -- construction -------------------------------------------------------------------------
    def _wn_factory(self):
        cfg = self.config

        def make(in_ch, out_ch, cond_ch):
            return WN(in_ch, out_ch, cond_ch, n_layers=cfg.wn_layers, n_channels=cfg.wn_channels,
                      kernel_size=cfg.wn_kernel_size)

        return make

    def _coupling(self, channels: int, parity: int = 0):
        cfg = self.config
        cc = cfg.cond_channels
        if cfg.coupling == "affine":
            return AffineCoupling(channels, scale=cfg.affine_scale, clamp=cfg.affine_clamp,
                                  conditioner=self._wn_factory(), cond_channels=cc, parity=parity)
        if cfg.coupling == "additive":
            return AdditiveCoupling(channels, conditioner=self._wn_factory(), cond_channels=cc,
                                    parity=parity)
        if cfg.coupling == "mixlogistic":
            return MixLogisticCoupling(channels, n_components=cfg.mix_components,
                                       conditioner=self._wn_factory(), cond_channels=cc, parity=parity)
        return ResidualBlock(channels, hidden=cfg.residual_hidden, n_layers=cfg.residual_layers,
                             kernel_size=cfg.wn_kernel_size, ndim=1, cond_channels=cc,
                             coeff=cfg.residual_coeff, logdet=cfg.residual_logdet)

    def _build(self) -> Sequential:
        cfg = self.config
        chans = cfg.flow_channels()
        # group the flows into levels separated by early outputs
        levels: list[list[int]] = []
        for k, c in enumerate(chans):
            if not levels or c != chans[k - 1]:
                levels.append([])
            levels[-1].append(k)
        inner = None
        for flows in reversed(levels):
            layers = []
            for k in flows:
                parity = k % 2 if cfg.alternate_halves else 0
                layers += [Invertible1x1Conv(chans[k], lu=cfg.lu), self._coupling(chans[k], parity)]
            if inner is not None:
                layers.append(Split(cfg.n_early_size, inner))
            inner = Sequential(*layers)
        return Sequential(Squeeze(cfg.n_group), *inner.layers)

    # -- information --------------------------------------------------------------------------
    def conditioners(self) -> list[nn.Module]:
        return [m for m in self.modules() if isinstance(m, WN)]

    def macs_per_sample(self) -> float:
        """Multiply-accumulates of synthesis per output sample (analytic).

        Counts every weight multiply of the upsampler, the invertible 1x1 convolutions and the
        conditioner networks (biases, gates and the elementwise coupling maps are not counted).
        For ``residual`` couplings one evaluation of each residual branch is counted; the
        fixed-point inverse evaluates it once per iteration. NVIDIA's default configuration
        gives about 10.2 M per sample (225 GMACs per second of 22.05 kHz audio).
        """
        cfg = self.config
        per_step = 0
        for c in cfg.flow_channels():
            per_step += c * c
            if cfg.coupling == "residual":
                h, k, L = cfg.residual_hidden, cfg.wn_kernel_size, cfg.residual_layers
                if L == 1:
                    per_step += c * c * k
                else:
                    per_step += c * h * k + h * h * (L - 2) + h * c * k + cfg.cond_channels * h * k
                continue
            fixed = c // 2
            moved = c - fixed
            n_out = moved * {"affine": 2, "additive": 1}.get(cfg.coupling, 3 * cfg.mix_components + 2)
            n, k, L = cfg.wn_channels, cfg.wn_kernel_size, cfg.wn_layers
            per_step += (fixed * n + L * k * n * 2 * n + (L - 1) * n * 2 * n + n * n
                         + cfg.cond_channels * 2 * n * L + n * n_out)
        extra = 0.0
        if self.cond_proj is not None:
            extra += cfg.squeezed_cond_channels * cfg.cond_proj / cfg.n_group
        if self.pitch is not None:  # once per frame
            k, c = self.pitch.kernel_size, cfg.pitch_channels
            extra += (cfg.n_mels * c * k + (cfg.pitch_layers - 1) * c * c * k + 2 * c) / cfg.hop_length
        return per_step / cfg.n_group + self.upsample.macs_per_sample() + extra

    @property
    def context_frames(self) -> int:
        """Frames of context on each side after which a synthesised sample no longer depends on
        the mel or noise (the receptive field of all flows in sequence plus the upsampler's).
        Chunked synthesis with this context equals unchunked synthesis up to rounding; for
        ``residual`` couplings (iterative inverses) it is an approximation."""
        cfg = self.config
        if cfg.coupling == "residual":  # two kernel-k layers per evaluation, ~4 iterations
            span = 4 * (cfg.wn_kernel_size - 1)
        else:
            span = (cfg.wn_kernel_size - 1) * (2**cfg.wn_layers - 1) // 2
        steps = cfg.n_flows * span
        frames = math.ceil(steps * cfg.n_group / cfg.hop_length)
        return frames + max(self.upsample.context_frames)

    def inference_context(self):
        """``torch.inference_mode()``, or ``torch.no_grad()`` when a layer needs autograd
        internally at inference (residual blocks compute their log-determinant with it)."""
        if self.config.coupling == "residual":
            return torch.no_grad()
        return super().inference_context()

    # -- the model ----------------------------------------------------------------------------
    def _audio(self, audio: torch.Tensor) -> torch.Tensor:
        if audio.dim() == 3 and audio.shape[1] == 1:
            return audio
        if audio.dim() != 2:
            raise ValueError(f"audio must be (B, T) or (B, 1, T), got {tuple(audio.shape)}")
        return audio[:, None]

    def condition(self, mel: torch.Tensor, excitation: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, n_mels, frames) -> (B, cond_channels, frames * hop / n_group)``: the mel
        upsampled to the sample rate, with the excitation stacked on it (models with one),
        squeezed like the audio and, with ``cond_proj``, projected."""
        up = super().condition(mel, excitation)
        c = Squeeze(self.config.n_group)(up)[0]
        if self.cond_proj is not None:
            c = self.cond_proj(c)
        return c

    def latent_shape(self, batch: int, frames: int) -> tuple[int, int, int]:
        g = self.config.n_group
        return (batch, g, frames * self.config.hop_length // g)

    def prior_log_scale(self, mel: torch.Tensor) -> torch.Tensor | None:
        """``log s`` of the data-dependent prior per latent column, ``(B, 1, frames * hop /
        n_group)`` (``None`` without ``prior: mel``)."""
        if self.prior_net is None:
            return None
        c = self.config.prior_clamp
        ls = c * torch.tanh(self.prior_net(mel) / c)
        return ls.repeat_interleave(self.config.hop_length // self.config.n_group, dim=2)

    def base_log_prob(self, z: torch.Tensor, mel: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
        """``log p(z | mel)`` of the base distribution, ``(B,)``: ``N(0, sigma^2)``, or with
        ``prior: mel`` ``N(0, (sigma * s_t)^2)``; with another ``base`` the density of
        ``sigma * s_t * e`` for standard base draws ``e``: ``log p_e(z / (sigma s_t)) - sum
        log(sigma s_t)``."""
        ls = self.prior_log_scale(mel)
        if not isinstance(self.base, Normal):
            ls = torch.zeros_like(z[:, :1]) if ls is None else ls.to(z.dtype)
            ls = (ls + math.log(sigma)).expand_as(z)
            return self.base.log_prob(z * torch.exp(-ls)) - ls.flatten(1).sum(dim=1)
        if ls is None:
            return Normal(sigma).log_prob(z)
        lp = gaussian_log_prob(z, log_scale=ls.to(z.dtype) + math.log(sigma))
        return lp.flatten(1).sum(dim=1)

    def base_noise(self, noise: torch.Tensor | None, shape, generator=None, like=None) -> torch.Tensor:
        """Standard base draws of ``shape``: ``noise`` (unit normals) mapped onto the base by its
        inverse CDF (the identity for ``normal``), or fresh draws of the base when ``None``."""
        normal = isinstance(self.base, Normal)
        if noise is not None:
            return noise if normal else self.base.from_normal(noise)
        dtype = like.dtype if like is not None else None
        device = generator.device if generator is not None else (like.device if like is not None else None)
        if normal:
            return torch.randn(shape, generator=generator, dtype=dtype, device=device)
        return self.base.sample(shape, generator=generator, dtype=dtype, device=device)

    def _check(self, x, mel):
        frames = mel.shape[-1]
        if x.shape[-1] != frames * self.config.hop_length:
            raise ValueError(f"audio of {x.shape[-1]} samples does not match {frames} mel frames "
                             f"x hop {self.config.hop_length} = {frames * self.config.hop_length}")
        if x.shape[0] != mel.shape[0]:
            raise ValueError(f"audio batch {x.shape[0]} != mel batch {mel.shape[0]}")

    def forward(self, audio: torch.Tensor, mel: torch.Tensor, f0: torch.Tensor | None = None,
                excitation: torch.Tensor | None = None, sample_sigma: float | None = None,
                noise: torch.Tensor | None = None, pitch_loss: bool = False,
                sigma: float | None = None):
        """``(z, logdet)``: audio ``(B, T)`` to the latent ``(B, n_group, T / n_group)``.

        Models with an excitation take ``f0`` ``(B, frames)`` in Hz (or a ready ``excitation``);
        without either, the predicted F0 is used. For training, ``sample_sigma`` (a temperature)
        also draws a sample through the inverse pass from the same conditioning (``noise``:
        optional unit-variance latent noise) and ``pitch_loss`` also scores the pitch predictor
        against ``f0``, and ``sigma`` also gives ``log_prob`` (``(B,)``, the base density at
        that sigma plus ``logdet``); the call then returns a dict with ``z``, ``logdet`` and, as
        asked, ``sample`` (``(B, T)``), ``pitch_loss``/``pitch_stats`` and ``log_prob`` (one
        ``forward`` for all, so that it works under DistributedDataParallel).
        """
        x = self._audio(audio)
        self._check(x, mel)
        if excitation is None and self.excitation is not None:
            excitation = self.make_excitation(mel, f0)
        cond = self.condition(mel, excitation)
        x = x.to(mel.dtype) if x.dtype != mel.dtype else x
        src = self._source_of(excitation)
        if src is not None:
            x = x - src.to(x.dtype)  # a conditioning-only translation: log-determinant 0
        z, logdet = self.bijector(x, cond)
        if sample_sigma is None and not pitch_loss and sigma is None:
            return z, logdet
        out = {"z": z, "logdet": logdet}
        if sigma is not None:
            out["log_prob"] = self.base_log_prob(z.float(), mel, sigma) + logdet.float()
        if sample_sigma is not None:
            eps = self.base_noise(None if noise is None else noise.to(z), z.shape, like=z)
            out["sample"] = self._from_latent(eps * sample_sigma, mel, cond, src)
        if pitch_loss:
            if self.pitch is None or f0 is None:
                raise ValueError("pitch_loss needs a model with an excitation and the tracked f0")
            out["pitch_loss"], out["pitch_stats"] = self.pitch.loss(mel, f0)
        return out

    def _from_latent(self, z: torch.Tensor, mel: torch.Tensor, cond: torch.Tensor,
                     source: torch.Tensor | None = None) -> torch.Tensor:
        ls = self.prior_log_scale(mel)
        if ls is not None:
            z = z * torch.exp(ls).to(z.dtype)
        x, _ = self.bijector.inverse(z, cond)
        if source is not None:
            x = x + source.to(x.dtype)
        return x[:, 0]

    def log_prob(self, audio: torch.Tensor, mel: torch.Tensor, sigma: float = 1.0,
                 f0: torch.Tensor | None = None) -> torch.Tensor:
        """``log p(audio | mel)`` in nats per utterance, ``(B,)``, with latent ``N(0, sigma^2)``
        (times the prior's per-frame scale with ``prior: mel``)."""
        z, logdet = self(audio, mel, f0=f0)
        return self.base_log_prob(z, mel, sigma) + logdet

    def nll(self, audio: torch.Tensor, mel: torch.Tensor, sigma: float = 1.0,
            f0: torch.Tensor | None = None) -> torch.Tensor:
        """Mean negative log-likelihood in nats per audio sample (a scalar)."""
        samples = self._audio(audio).shape[-1]
        return -self.log_prob(audio, mel, sigma, f0=f0).mean() / samples

    def infer(self, mel: torch.Tensor, sigma: float = 0.6, noise: torch.Tensor | None = None,
              generator: torch.Generator | None = None, f0: torch.Tensor | None = None,
              excitation: torch.Tensor | None = None) -> torch.Tensor:
        """Synthesise ``(B, frames * hop)`` audio from ``mel (B, n_mels, frames)``.

        ``noise`` (optional) is unit-variance normal noise, either in sample layout ``(B, frames *
        hop)`` or in latent layout ``(B, n_group, frames * hop / n_group)``; a non-normal ``base``
        maps it onto its standard draws by the inverse CDF (elementwise, monotone); the draws are
        multiplied by ``sigma``. Without it the noise is drawn from the base with ``generator``.
        Models with an excitation use ``f0`` ``(B, frames)`` in Hz when given (e.g. from a TTS
        front end), else the F0 predicted from the mel; ``excitation`` (sample rate) may be given ready-made instead.
        """
        if mel.dim() == 2:
            mel = mel[None]
        shape = self.latent_shape(mel.shape[0], mel.shape[-1])
        if noise is None:
            z = self.base_noise(None, shape, generator, like=mel).to(mel.device)
        else:
            z = noise
            if z.dim() == 2 and tuple(z.shape) == (shape[0], shape[1] * shape[2]):
                z = Squeeze(self.config.n_group)(z[:, None])[0]
            if tuple(z.shape) != shape:
                raise ValueError(f"noise must have shape {shape} (or {(shape[0], shape[1] * shape[2])}), "
                                 f"got {tuple(noise.shape)}")
            z = self.base_noise(z.to(device=mel.device, dtype=mel.dtype), shape)
        if excitation is None and self.excitation is not None:
            excitation = self.make_excitation(mel, f0)
        return self._from_latent(z * sigma, mel, self.condition(mel, excitation),
                                 self._source_of(excitation))


def bf16_conditioners(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose :class:`~vocoflow.nets.WN` conditioners hold bfloat16 weights.

    ``WN`` casts its input to its weights' dtype and its output back, so in the copy the
    conditioners compute in bfloat16 while everything else (invertible 1x1 convolutions, the
    coupling maps, log-determinants, the upsampler) stays in the original dtype.
    """
    clone = copy.deepcopy(model)
    for m in clone.modules():
        if isinstance(m, WN):
            m.to(torch.bfloat16)
    return clone
