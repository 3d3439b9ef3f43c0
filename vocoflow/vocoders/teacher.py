"""Autoregressive WaveNet teachers for probability density distillation.

:class:`WaveNetTeacher` models ``p(x | mel) = prod_t p(x_t | x_<t, mel)`` with a strictly causal,
mel-conditioned WaveNet (:class:`~vocoflow.nets.WN` with ``causal=True`` and dilation stacks).
The per-step output law is either a single Gaussian (ClariNet; Ping et al., 2019) or a
continuous mixture of logistics (Parallel WaveNet; van den Oord et al., 2018).

* Training (teacher forcing) is one parallel pass: ``log_prob(audio, mel)``.
* Seen as a flow (a masked autoregressive flow), ``forward(audio, mel) -> (z, logdet)`` maps the
  audio to i.i.d. base noise (``base``: standard Normal for the Gaussian output, standard
  Logistic for the mixture, ``z = logit(CDF(x))``), so ``base.log_prob(z) + logdet`` is the
  exact log-likelihood.
* Sampling is sequential. :meth:`WaveNetTeacher.sample` with ``method="cached"`` steps the
  network one sample at a time (:meth:`~vocoflow.nets.WN.step`), which keeps, for every
  layer, a ring buffer of its last ``(kernel - 1) * dilation`` inputs (the "fast generation"
  queues of Paine et al., 2016), so each new sample costs ``O(layers)`` work, not
  ``O(receptive field)``; ``method="naive"`` recomputes the whole causal network for every
  sample (``O(T^2)``; the reference the cached sampler is tested against).

The distillation losses use :meth:`WaveNetTeacher.gaussian_params` (per-step mean and
log-scale given ``x_<t``) for the closed-form KL and :meth:`WaveNetTeacher.log_prob` otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from vocoflow.flows import Logistic, Normal, gaussian_log_prob
from vocoflow.flows.elementwise import mixlogistic_logcdf, mixlogistic_logpdf
from vocoflow.nets.upsample import MelUpsampler
from vocoflow.nets.wavenet import WN

from .base import MelModelConfig, MelModelMixin, check_int_fields, config_from_dict, resolve_config

__all__ = ["WaveNetTeacherConfig", "WaveNetTeacher", "OUTPUTS", "config_from_dict"]

OUTPUTS = ("gaussian", "mixlogistic")


@dataclass
class WaveNetTeacherConfig(MelModelConfig, type_name="wavenet_teacher"):
    """Hyper-parameters of :class:`WaveNetTeacher`.

    ``n_layers`` causal dilated layers (dilations ``2**(i % dilation_cycle)``), ``channels``
    residual/skip width, ``kernel_size`` taps (2 as in WaveNet). ``output`` is ``gaussian``
    (ClariNet) or ``mixlogistic`` (``mix_components`` logistics). Predicted log-scales are
    clamped below at ``min_log_scale``. ``upsample``/``upsample_kernel`` as in WaveGlow.

    >>> WaveNetTeacherConfig.from_dict({"type": "wavenet_teacher", "n_layers": 4},
    ...                                features={"n_mels": 8, "hop_length": 16}).n_mels
    8
    """

    n_layers: int = 20
    dilation_cycle: int = 10
    channels: int = 64
    kernel_size: int = 2
    output: str = "gaussian"
    mix_components: int = 10
    min_log_scale: float = -7.0
    upsample: str = "transpose"
    upsample_kernel: int | None = None

    def __post_init__(self):
        check_int_fields(self, ("n_mels", "hop_length", "n_layers", "dilation_cycle", "channels",
                              "kernel_size", "mix_components"))
        self.min_log_scale = float(self.min_log_scale)
        if self.upsample_kernel is not None:
            self.upsample_kernel = int(self.upsample_kernel)
        if self.output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {self.output!r}")
        if self.upsample not in ("transpose", "repeat"):
            raise ValueError(f"upsample must be 'transpose' or 'repeat', got {self.upsample!r}")

    @property
    def n_out(self) -> int:
        return 2 if self.output == "gaussian" else 3 * self.mix_components


class WaveNetTeacher(MelModelMixin, nn.Module):
    """Mel-conditioned autoregressive WaveNet (van den Oord et al., 2016) with a Gaussian
    (ClariNet, Ping et al., 2019) or mixture-of-logistics (Parallel WaveNet, van den Oord et
    al., 2018) output per sample.

    * ``log_prob(audio (B, T), mel (B, n_mels, frames), sigma=1.0) -> (B,)`` nats.
    * ``forward(audio, mel) -> (z, logdet)``: the flow view (``base.log_prob(z) + logdet``).
    * ``gaussian_params(audio, mel) -> (mu, log_scale)``, each ``(B, T)``, given ``x_<t``.
    * ``infer(mel, sigma=1.0, noise=None, generator=None) -> (B, frames * hop)``: sequential
      sampling with cached activations (slow: one network step per sample).

    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> m = WaveNetTeacher(n_mels=4, hop_length=8, n_layers=4, dilation_cycle=2, channels=8)
    >>> audio, mel = 0.1 * torch.randn(2, 24), torch.randn(2, 4, 3)
    >>> m.log_prob(audio, mel).shape, m.infer(mel).shape
    (torch.Size([2]), torch.Size([2, 24]))
    >>> torch.nn.init.normal_(m.net.end.weight, std=0.1)  # doctest: +ELLIPSIS
    Parameter...
    >>> noise = torch.randn(2, 24)
    >>> cached = m.sample(mel, noise=noise, method="cached")
    >>> bool(torch.allclose(cached, m.sample(mel, noise=noise, method="naive"), atol=1e-5))
    True
    """

    def __init__(self, config: WaveNetTeacherConfig | dict | None = None, **overrides):
        super().__init__()
        self.config = cfg = resolve_config(WaveNetTeacherConfig, config, overrides)
        self.upsample = MelUpsampler(cfg.n_mels, cfg.hop_length, cfg.upsample, cfg.upsample_kernel)
        self.net = WN(1, cfg.n_out, cfg.n_mels, n_layers=cfg.n_layers, n_channels=cfg.channels,
                      kernel_size=cfg.kernel_size, causal=True,
                      dilation_cycle=cfg.dilation_cycle)
        self.base = Normal() if cfg.output == "gaussian" else Logistic()

    # -- information --------------------------------------------------------------------------
    @property
    def receptive_field(self) -> int:
        """Past samples one output step can depend on (plus itself)."""
        return self.net.receptive_field

    @property
    def context_frames(self) -> int:
        """Frames of left context that a sample depends on (for chunked synthesis this is an
        approximation: an autoregressive sampler does not restart exactly)."""
        return math.ceil(self.net.receptive_field / self.hop_length) + max(self.upsample.context_frames)

    def macs_per_sample(self) -> float:
        return self.net.macs_per_step() + self.upsample.macs_per_sample()

    def conditioners(self) -> list[nn.Module]:
        return [self.net]

    # -- the density --------------------------------------------------------------------------
    def _audio(self, audio: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
        if audio.dim() == 3 and audio.shape[1] == 1:
            audio = audio[:, 0]
        if audio.dim() != 2:
            raise ValueError(f"audio must be (B, T) or (B, 1, T), got {tuple(audio.shape)}")
        if audio.shape[-1] != mel.shape[-1] * self.hop_length:
            raise ValueError(f"audio of {audio.shape[-1]} samples does not match {mel.shape[-1]} "
                             f"mel frames x hop {self.hop_length}")
        return audio

    def split_params(self, out: torch.Tensor, sigma: float = 1.0):
        """Raw network output ``(B, n_out, ...)`` to the law's parameters: ``(mu, log_scale)``
        for the Gaussian, ``(logits, means, log_scales)`` (mixture on dim 1) for the mixture.
        Log-scales are clamped at ``min_log_scale``; ``sigma`` (temperature) multiplies the
        scales."""
        cfg = self.config
        shift = math.log(sigma) if sigma != 1.0 else 0.0
        if cfg.output == "gaussian":
            mu, ls = out[:, 0], out[:, 1]
            return mu, ls.clamp(min=cfg.min_log_scale) + shift
        k = cfg.mix_components
        logits, means, ls = out[:, :k], out[:, k:2 * k], out[:, 2 * k:3 * k]
        return logits, means, ls.clamp(min=cfg.min_log_scale) + shift

    def params(self, audio: torch.Tensor, mel: torch.Tensor, sigma: float = 1.0):
        """The per-step law parameters given ``x_<t`` (teacher forcing, one parallel pass)."""
        x = self._audio(audio, mel)
        out = self.net(x[:, None].to(mel.dtype), self.condition(mel))
        return self.split_params(out, sigma)

    def gaussian_params(self, audio, mel, sigma: float = 1.0):
        """``(mu, log_scale)`` of ``p(x_t | x_<t, mel)``, each ``(B, T)`` (Gaussian output)."""
        if self.config.output != "gaussian":
            raise ValueError("gaussian_params needs a teacher with output: gaussian")
        return self.params(audio, mel, sigma)

    def step_log_prob(self, audio, mel, sigma: float = 1.0) -> torch.Tensor:
        """``log p(x_t | x_<t, mel)`` per sample, ``(B, T)``."""
        x = self._audio(audio, mel).to(mel.dtype)
        p = self.params(x, mel, sigma)
        if self.config.output == "gaussian":
            mu, ls = p
            return gaussian_log_prob(x, mu, ls)
        logits, means, ls = p
        return mixlogistic_logpdf(x, logits, means, ls)

    def log_prob(self, audio, mel, sigma: float = 1.0) -> torch.Tensor:
        """``log p(audio | mel)`` in nats per utterance, ``(B,)``."""
        return self.step_log_prob(audio, mel, sigma).sum(dim=-1)

    def nll(self, audio, mel, sigma: float = 1.0) -> torch.Tensor:
        """Mean negative log-likelihood in nats per audio sample (a scalar)."""
        return -self.step_log_prob(audio, mel, sigma).mean()

    def forward(self, audio, mel):
        """``(z, logdet)`` with ``z`` in the base space ``(B, T)``, ``logdet = log|dz/dx|``."""
        x = self._audio(audio, mel).to(mel.dtype)
        p = self.params(x, mel)
        if self.config.output == "gaussian":
            mu, ls = p
            return (x - mu) * torch.exp(-ls), -ls.sum(dim=-1)
        logits, means, ls = p
        log_c, log_1mc = mixlogistic_logcdf(x, logits, means, ls)
        logpdf = mixlogistic_logpdf(x, logits, means, ls)
        return log_c - log_1mc, (logpdf - log_c - log_1mc).sum(dim=-1)

    # -- sampling -----------------------------------------------------------------------------
    def _draw(self, out: torch.Tensor, n: torch.Tensor, sigma: float) -> torch.Tensor:
        """One sample per row from the law with raw parameters ``out (B, n_out)``, driven by the
        unit-normal ``n (B,)`` only (so cached and naive sampling use the same randomness)."""
        p = self.split_params(out[..., None], sigma)
        if self.config.output == "gaussian":
            mu, ls = p
            return (mu + torch.exp(ls) * n[:, None])[:, 0]
        logits, means, ls = p
        # u ~ U(0, 1) picks the component by the cumulative weights; the position of u inside
        # the chosen component's interval is again uniform and drives the logistic quantile.
        u = torch.special.ndtr(n.double()).to(out.dtype)[:, None]
        w = torch.softmax(logits[..., 0], dim=1)
        cw = torch.cumsum(w, dim=1)
        k = (cw < u).sum(dim=1, keepdim=True).clamp(max=w.shape[1] - 1)
        lo = torch.gather(cw - w, 1, k)
        wk = torch.gather(w, 1, k)
        eps = torch.finfo(out.dtype).eps
        v = ((u - lo) / wk.clamp_min(eps)).clamp(eps, 1 - eps)
        mu = torch.gather(means[..., 0], 1, k)
        s = torch.exp(torch.gather(ls[..., 0], 1, k))
        return (mu + s * (torch.log(v) - torch.log1p(-v)))[:, 0]

    def _noise(self, mel, noise, generator):
        b, t = mel.shape[0], mel.shape[-1] * self.hop_length
        if noise is None:
            noise = torch.randn(b, t, generator=generator, dtype=mel.dtype,
                                device=generator.device if generator is not None else mel.device)
        if noise.dim() == 3:
            noise = noise[:, 0]
        if tuple(noise.shape) != (b, t):
            raise ValueError(f"noise must have shape {(b, t)}, got {tuple(noise.shape)}")
        return noise.to(device=mel.device, dtype=mel.dtype)

    @torch.no_grad()
    def sample(self, mel: torch.Tensor, sigma: float = 1.0, noise: torch.Tensor | None = None,
               generator: torch.Generator | None = None, method: str = "cached") -> torch.Tensor:
        """Ancestral sampling ``(B, frames * hop)`` from ``mel (B, n_mels, frames)``.

        ``noise`` is unit-normal ``(B, T)`` (one value per sample drives the draw), ``sigma``
        multiplies the predicted scales. ``method``: ``cached`` (per-layer queues, ``O(layers)``
        per sample) or ``naive`` (recompute the network, ``O(T)`` per sample)."""
        if mel.dim() == 2:
            mel = mel[None]
        noise = self._noise(mel, noise, generator)
        cond = self.condition(mel)
        if method == "cached":
            return self._sample_cached(cond, noise, sigma)
        if method == "naive":
            return self._sample_naive(cond, noise, sigma)
        raise ValueError(f"method must be 'cached' or 'naive', got {method!r}")

    def infer(self, mel: torch.Tensor, sigma: float = 1.0, noise: torch.Tensor | None = None,
              generator: torch.Generator | None = None) -> torch.Tensor:
        """Synthesis for the :class:`~vocoflow.vocoders.Vocoder` API (cached sampler)."""
        return self.sample(mel, sigma=sigma, noise=noise, generator=generator)

    def _sample_naive(self, cond, noise, sigma):
        b, t = noise.shape
        x = noise.new_zeros(b, 1, t)
        for i in range(t):
            out = self.net(x, cond)[..., i]
            x[:, 0, i] = self._draw(out, noise[:, i], sigma)
        return x[:, 0]

    def _sample_cached(self, cond, noise, sigma, block: int = 4096):
        net = self.net
        b, t = noise.shape
        cache = net.init_cache(b)
        out_x = noise.new_empty(b, t)
        x_prev = noise.new_zeros(b, 1)
        for t0 in range(0, t, block):
            t1 = min(t, t0 + block)
            c_blk = net.conditioning(cond[..., t0:t1])  # (B, blk, 2 n L) or None
            for step in range(t0, t1):
                out = net.step(x_prev, cache, None if c_blk is None else c_blk[:, step - t0])
                xt = self._draw(out, noise[:, step], sigma)
                out_x[:, step] = xt
                x_prev = xt[:, None]
        return out_x
