"""Image flows built from :mod:`vocoflow.flows`: NICE, RealNVP, Glow, DenseFlow and a residual
flow.

Every model is an :class:`ImageFlow`: a base density, a data scaling (pixels in ``[0, 256)``
to the model's range, with its log-Jacobian) and a core bijector whose latent has the shape of
the image. ``build_image_flow({"type": ..., ...}, image_shape)`` builds one from a config dict;
the types are the builders registered in :data:`IMAGE_MODELS`.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import torch
from torch import nn

from vocoflow.flows import (
    BASE_DISTRIBUTIONS,
    ActNorm,
    AdditiveCoupling,
    AffineCoupling,
    Bijector,
    Flow,
    Inverse,
    Invertible1x1Conv,
    Logistic,
    Normal,
    ResidualBlock,
    Scale,
    Sequential,
    Split,
    Squeeze,
    build_base,
)
from vocoflow.flows.augment import CrossUnitAugment
from vocoflow.nets.resnet import ZeroConv2d, glow_factory, resnet_factory
from vocoflow.registry import ClassChoices

from .dequantization import VariationalDequantizer
from .layers import DataScaling, Flatten, Permute, UniformBox

__all__ = [
    "ImageFlow", "nice", "realnvp", "glow", "denseflow", "resflow", "build_image_flow",
    "load_image_flow", "IMAGE_MODELS",
]

LOG2 = math.log(2.0)


def _base(name: str) -> nn.Module:
    if name == "normal":
        return Normal()
    if name == "logistic":
        return Logistic()
    if name == "uniform":
        return UniformBox()
    choice = BASE_DISTRIBUTIONS.find(name)
    if choice is not None and not choice.has("channels"):  # e.g. student_t (df 5)
        return build_base(name)
    usable = ["normal", "logistic", "uniform"] + [n for n in BASE_DISTRIBUTIONS.names(channels=False)
                                                  if n not in ("normal", "logistic")]
    raise ValueError(f"prior must be one of {', '.join(usable)}, not {name!r}")


class ImageFlow(Flow):
    """A flow on images of ``image_shape = (C, H, W)`` with 8-bit data semantics.

    ``bijector = Sequential(DataScaling, core)``; the latent has the image's shape, or
    ``latent_shape`` for models that augment the data with noise
    (:class:`~vocoflow.flows.CrossUnitAugment`, :func:`denseflow`): their log-det carries
    ``-log q`` of the noise, so every likelihood below is then a lower bound (upper bound in
    bits/dim) in expectation over that noise, and sampling drops the augmented dimensions.

    * ``forward(x, cond=None, noise=None)``: with ``noise=None`` the data-to-latent map of
      continuous pixels ``x`` in ``[0, 256)`` (the :class:`~vocoflow.flows.Flow` contract).
      With ``noise`` (``U[0, 1)`` of the image's shape), ``x`` holds integer pixel values and is
      dequantised first (uniformly, or by the learned ``dequantizer``); the returned log-det
      then also carries ``-log q(u | x)``, so ``base.log_prob(z) + logdet`` is the dequantisation
      bound on ``log P(x)``.
    * ``bits_per_dim(x, noise)``: per-item ``-log P(x) / (D log 2)`` bound.
    * ``sample_images(n, temperature)``: uint8 images; ``encode``/``decode`` for interpolation.
    * ``logdet_train``/``logdet_eval`` (residual flows): settings applied to every
      :class:`~vocoflow.flows.ResidualBlock` by ``train()`` and ``eval()``.

    >>> import torch
    >>> model = build_image_flow({"type": "glow", "levels": 2, "steps": 1, "hidden": 8}, (1, 4, 4))
    >>> x = torch.randint(0, 256, (3, 1, 4, 4))
    >>> model.bits_per_dim(x, torch.rand(3, 1, 4, 4)).shape
    torch.Size([3])
    >>> model.sample_images(2, temperature=0.7).dtype
    torch.uint8
    """

    def __init__(self, core: Bijector, image_shape, base: nn.Module | None = None,
                 scaling: str = "centered", alpha: float = 0.05,
                 dequantizer: nn.Module | None = None, config: dict | None = None,
                 logdet_train: dict | None = None, logdet_eval: dict | None = None,
                 latent_shape=None):
        super().__init__(base if base is not None else Normal(),
                         Sequential(DataScaling(scaling, alpha), core))
        self.image_shape = tuple(int(s) for s in image_shape)
        self.latent_shape = tuple(int(s) for s in (latent_shape or image_shape))
        self.dequantizer = dequantizer
        self.config = dict(config or {})
        self.logdet_train = dict(logdet_train) if logdet_train else None
        self.logdet_eval = dict(logdet_eval) if logdet_eval else None
        if self.logdet_train:
            self.set_logdet(**self.logdet_train)

    @property
    def scaling(self) -> DataScaling:
        return self.bijector[0]

    @property
    def core(self) -> Bijector:
        return self.bijector[1]

    @property
    def dims(self) -> int:
        return math.prod(self.image_shape)

    # -- residual-flow log-det settings -----------------------------------------------------
    def residual_blocks(self) -> list[nn.Module]:
        return [m for m in self.modules() if isinstance(m, ResidualBlock)]

    def set_logdet(self, logdet: str | None = None, **settings) -> None:
        """Set ``logdet_mode`` (``exact``/``series``/``unbiased``) and attributes such as
        ``n_exact_terms``, ``n_series_terms``, ``n_hutchinson`` on every residual block."""
        for block in self.residual_blocks():
            if logdet is not None:
                block.logdet_mode = logdet
            for k, v in settings.items():
                if not hasattr(block, k):
                    raise ValueError(f"ResidualBlock has no setting {k!r}")
                setattr(block, k, v)

    @contextlib.contextmanager
    def logdet_settings(self, **settings):
        """Temporarily change the residual blocks' log-det settings."""
        blocks = self.residual_blocks()
        keys = set(settings) | {"logdet_mode"}
        saved = [{k: getattr(b, k) for k in keys if k != "logdet"} for b in blocks]
        try:
            self.set_logdet(**settings)
            yield self
        finally:
            for b, s in zip(blocks, saved):
                for k, v in s.items():
                    setattr(b, k, v)

    def train(self, mode: bool = True):
        super().train(mode)
        settings = self.logdet_train if mode else self.logdet_eval
        if settings:
            self.set_logdet(**settings)
        return self

    # -- likelihoods --------------------------------------------------------------------------
    def dequantize(self, x: torch.Tensor, noise: torch.Tensor):
        """``(x + u, log q(u | x))`` for integer pixels ``x`` and ``U[0, 1)`` noise."""
        x = x.to(noise.dtype)
        if self.dequantizer is None:
            return x + noise, noise.new_zeros(x.shape[0])
        u, log_q = self.dequantizer(x, noise)
        return x + u, log_q

    def forward(self, x, cond=None, noise=None):
        if noise is None:
            return self.bijector(x, cond)
        xc, log_q = self.dequantize(x, noise)
        z, logdet = self.bijector(xc, cond)
        return z, logdet - log_q

    @property
    def augmented(self) -> bool:
        """Whether the model appends noise channels (:class:`~vocoflow.flows.CrossUnitAugment`)."""
        return any(isinstance(m, CrossUnitAugment) for m in self.modules())

    def bits_per_dim(self, x: torch.Tensor, noise: torch.Tensor, cond=None,
                     samples: int = 1) -> torch.Tensor:
        """Per-item dequantisation bound on ``-log2 P(x) / D`` for integer pixels ``x``.

        For an augmented model each call draws the augmentation noise: the value is one sample
        of the negative augmented ELBO. With ``samples = K > 1`` it is the importance-weighted
        bound ``-log (1/K) sum_k exp(ELBO_k)`` over ``K`` augmentation draws (Burda, Grosse &
        Salakhutdinov, 2016), still an upper bound on the bits/dim and tighter on average; the
        dequantisation ``noise`` is shared by the ``K`` draws.
        """
        if int(samples) != samples or samples < 1:
            raise ValueError(f"samples must be a positive integer, got {samples!r}")
        if samples > 1 and not self.augmented:
            raise ValueError("samples > 1 is only meaningful for a model with augmented noise")
        lps = []
        for _ in range(int(samples)):
            z, logdet = self(x, cond, noise=noise)
            lps.append(self.base.log_prob(z) + logdet)
        lp = lps[0] if samples == 1 else torch.logsumexp(torch.stack(lps), 0) - math.log(samples)
        return -lp / (self.dims * LOG2)

    # -- sampling -----------------------------------------------------------------------------
    @staticmethod
    def quantize(x: torch.Tensor) -> torch.Tensor:
        """Continuous pixels in ``[0, 256)`` to uint8 (floor, clamped)."""
        return torch.nan_to_num(x, nan=0.0).floor().clamp(0, 255).to(torch.uint8)

    @torch.no_grad()
    def sample_images(self, n: int, temperature: float | None = None, generator=None,
                      cond=None) -> torch.Tensor:
        """``n`` uint8 images sampled at ``temperature`` (base standard deviation / scale)."""
        with self.logdet_settings(logdet="series", n_series_terms=1, n_hutchinson=1) \
                if self.residual_blocks() else contextlib.nullcontext():
            x = self.sample((n, *self.latent_shape), cond, temperature=temperature,
                            generator=generator)
        return self.quantize(x)

    @torch.no_grad()
    def encode(self, x: torch.Tensor, cond=None) -> torch.Tensor:
        """Latent of integer images, dequantised at the bin centres (``x + 0.5``)."""
        dtype = next(self.parameters()).dtype
        with self.logdet_settings(logdet="series", n_series_terms=1, n_hutchinson=1) \
                if self.residual_blocks() else contextlib.nullcontext():
            return self.bijector(x.to(dtype) + 0.5, cond)[0]

    @torch.no_grad()
    def decode(self, z: torch.Tensor, cond=None) -> torch.Tensor:
        with self.logdet_settings(logdet="series", n_series_terms=1, n_hutchinson=1) \
                if self.residual_blocks() else contextlib.nullcontext():
            return self.quantize(self.bijector.inverse(z, cond)[0])

    # -- saving -------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """One file with the config, the image shape and the weights."""
        torch.save({"config": self.config, "image_shape": list(self.image_shape),
                    "state_dict": self.state_dict()}, str(path))


# ---------------------------------------------------------------------------------------------
# NICE
# ---------------------------------------------------------------------------------------------


def nice(image_shape, n_couplings: int = 4, hidden: int = 1000, n_hidden_layers: int = 5,
         prior: str = "logistic", scaling: str = "unit", **kw) -> ImageFlow:
    """NICE (Dinh, Krueger & Bengio, 2014, "NICE: Non-linear Independent Components
    Estimation"): the flattened image, split into odd and even components, goes through
    ``n_couplings`` additive couplings with MLP conditioners (``n_hidden_layers`` ReLU layers of
    ``hidden`` units; the paper: 4 couplings, 5 x 1000 on MNIST) whose partitions alternate,
    then the diagonal :class:`~vocoflow.flows.Scale` layer; logistic prior.

    >>> model = nice((1, 4, 4), hidden=8, n_hidden_layers=1)
    >>> model.sample_images(2).shape
    torch.Size([2, 1, 4, 4])
    """
    d = math.prod(image_shape)
    layers = [Flatten(image_shape), Permute.even_odd(d)]
    for k in range(n_couplings):
        layers.append(AdditiveCoupling(d, mask="channel", parity=k % 2, ndim=0, hidden=hidden,
                                       n_layers=n_hidden_layers + 1))
    layers += [Scale((d,)), Inverse(Flatten(image_shape))]
    return ImageFlow(Sequential(*layers), image_shape, _base(prior), scaling=scaling, **kw)


# ---------------------------------------------------------------------------------------------
# RealNVP
# ---------------------------------------------------------------------------------------------


def _check_divisible(image_shape, factor, what):
    _, h, w = image_shape
    if h % factor or w % factor:
        raise ValueError(f"{what}: image size {h}x{w} must be divisible by {factor}")


def realnvp(image_shape, n_scales: int = 2, hidden: int = 64, n_blocks: int = 2,
            clamp: float = 3.0, scale: str = "softclamp", prior: str = "normal",
            scaling: str = "logit",
            alpha: float = 0.05, **kw) -> ImageFlow:
    """RealNVP (Dinh, Sohl-Dickstein & Bengio, 2017, "Density estimation using Real NVP").

    Every scale but the last: 3 checkerboard affine couplings, a squeeze, 3 channel-wise affine
    couplings, then half of the channels are factored out; the last scale: 4 checkerboard
    couplings. Masks alternate. Conditioners are residual networks
    (:class:`~vocoflow.nets.resnet.ResNetConditioner`, ``n_blocks`` blocks of ``hidden``
    channels; the paper's CIFAR-10 model: 8 blocks of 64, 2 scales). Data in logit space
    (``alpha = 0.05``). The scale is ``exp(clamp * tanh(h / clamp))`` (``scale="softclamp"``;
    the paper: ``exp(s * tanh(h))``), or Glow's ``2 sigmoid(h)`` (``scale="sigmoid"``), which
    bounds each coupling's amplification by 2 and keeps the deep stack from blowing up on
    unusual inputs.

    >>> model = realnvp((1, 4, 4), hidden=8, n_blocks=1)
    >>> model.sample_images(2).shape
    torch.Size([2, 1, 4, 4])
    """
    _check_divisible(image_shape, 2 ** (n_scales - 1), "realnvp")
    factory = resnet_factory(hidden=hidden, n_blocks=n_blocks)

    def coupling(c, mask, parity):
        return AffineCoupling(c, mask=mask, parity=parity, conditioner=factory, ndim=2,
                              scale=scale, clamp=clamp)

    def level_(c, level):
        if level == n_scales - 1:
            return Sequential(*[coupling(c, "checkerboard", k % 2) for k in range(4)])
        layers = [coupling(c, "checkerboard", k % 2) for k in range(3)]
        layers.append(Squeeze(2))
        layers += [coupling(4 * c, "channel", k % 2) for k in range(3)]
        early = 2 * c
        layers.append(Split(early, level_(4 * c - early, level + 1)))
        layers.append(Inverse(Squeeze(2)))
        return Sequential(*layers)

    return ImageFlow(level_(image_shape[0], 0), image_shape, _base(prior), scaling=scaling,
                     alpha=alpha, **kw)


# ---------------------------------------------------------------------------------------------
# Glow
# ---------------------------------------------------------------------------------------------

def _glow_step(c: int, coupling: str, factory, lu: bool) -> list:
    """One Glow flow step on ``c`` channels: ActNorm, invertible 1x1 convolution, coupling."""
    if coupling == "affine":
        cpl = AffineCoupling(c, mask="channel", conditioner=factory, ndim=2, scale="sigmoid")
    else:
        cpl = AdditiveCoupling(c, mask="channel", conditioner=factory, ndim=2)
    return [ActNorm(c), Invertible1x1Conv(c, lu=lu), cpl]

def glow(image_shape, levels: int = 3, steps: int = 32, hidden: int = 512,
         coupling: str = "affine", lu: bool = True, split_prior: bool = True,
         prior: str = "normal", scaling: str = "centered", alpha: float = 0.05,
         **kw) -> ImageFlow:
    """Glow (Kingma & Dhariwal, 2018, "Glow: Generative Flow with Invertible 1x1
    Convolutions"): ``levels`` levels, each a squeeze and ``steps`` steps of [ActNorm,
    invertible 1x1 convolution (LU-parametrised with ``lu=True``), additive or affine
    coupling], then (all but the last level) half of the channels are split off with a learned
    conditional prior ``N(mu, sigma)`` computed from the rest by a zero-initialised 3x3
    convolution. Conditioners: :class:`~vocoflow.nets.resnet.GlowConditioner` (``hidden`` =
    512 in the paper, ``steps`` K = 32, ``levels`` L = 3 on CIFAR-10). Affine couplings use
    Glow's ``sigmoid`` scale. Sample at lower temperature with ``sample_images(n, T)``.

    >>> model = glow((1, 4, 4), levels=2, steps=2, hidden=8)
    >>> model.sample_images(2, temperature=0.7).shape
    torch.Size([2, 1, 4, 4])
    """
    if coupling not in ("affine", "additive"):
        raise ValueError(f"glow coupling must be affine or additive, not {coupling!r}")
    _check_divisible(image_shape, 2 ** levels, "glow")
    factory = glow_factory(hidden=hidden)

    def step(c):
        return _glow_step(c, coupling, factory, lu)

    def level(c, lvl):
        c4 = 4 * c
        layers: list[Bijector] = [Squeeze(2)]
        for _ in range(steps):
            layers += step(c4)
        if lvl < levels - 1:
            early = c4 // 2
            rest = c4 - early
            pri = _SplitPrior(rest, early) if split_prior else None
            layers.append(Split(early, level(rest, lvl + 1), prior=pri))
        layers.append(Inverse(Squeeze(2)))
        return Sequential(*layers)

    return ImageFlow(level(image_shape[0], 0), image_shape, _base(prior), scaling=scaling,
                     alpha=alpha, **kw)


class _SplitPrior(nn.Module):
    """``net(z_rest, cond) -> (mu, log_sigma)`` channels for Glow's split: a ZeroConv2d."""

    def __init__(self, in_channels: int, n_early: int):
        super().__init__()
        self.conv = ZeroConv2d(in_channels, 2 * n_early)

    def forward(self, x, cond=None):
        return self.conv(x)


# ---------------------------------------------------------------------------------------------
# DenseFlow-style cross-unit augmentation
# ---------------------------------------------------------------------------------------------


def denseflow(image_shape, levels: int = 2, steps: int = 8, hidden: int = 64,
              augment=(4, 8), aug_hidden: int = 32, coupling: str = "affine", lu: bool = True,
              split_prior: bool = True, prior: str = "normal", scaling: str = "logit",
              alpha: float = 0.05, **kw) -> ImageFlow:
    """A Glow-like multi-scale flow with DenseFlow's cross-unit coupling (Grcic, Grubisic &
    Segvic, 2021, "Densely connected normalizing flows"): at the start of level ``l``, after
    the squeeze, :class:`~vocoflow.flows.CrossUnitAugment` appends ``augment[l]`` channels of
    noise ``e' = mu(x) + sigma(x) e`` (conditioner: a Glow network of ``aug_hidden`` channels),
    then ``steps`` Glow steps (ActNorm, 1x1 convolution, coupling with ``hidden`` channels) run
    on the wider representation; all but the last level split half of the channels off with a
    learned prior, as in :func:`glow`. The paper's intra-unit couplings (dense blocks with
    Nystrom attention) are replaced by Glow's coupling networks.

    The likelihood is the augmented lower bound ``log p(x) >= E[log p([x, e']) - log q(e' |
    x)]``: ``bits_per_dim`` returns one sample of its negative in bits/dim (an upper bound on
    the true bits/dim in expectation; ``samples=K`` for the importance-weighted bound).
    Sampling draws the augmented latent and drops the noise channels.

    The latent is kept at the first level's resolution: ``(4 C + augment[0] + ..., H/2,
    W/2)``; the deeper levels are unsqueezed back, so for ``l >= 1`` the channels they add
    must be divisible by 4 (``augment[l] + extra[l + 1] = 0 mod 4``, ``extra[l] = (augment[l] +
    extra[l + 1]) / 4``; with two levels: ``augment[1] % 4 == 0``).

    >>> model = denseflow((1, 4, 4), levels=2, steps=1, hidden=8, augment=[2, 4], aug_hidden=4)
    >>> model.latent_shape, model.bits_per_dim(torch.randint(0, 256, (3, 1, 4, 4)),
    ...                                        torch.rand(3, 1, 4, 4)).shape
    ((7, 2, 2), torch.Size([3]))
    >>> model.sample_images(2, temperature=0.7).shape
    torch.Size([2, 1, 4, 4])
    """
    if coupling not in ("affine", "additive"):
        raise ValueError(f"denseflow coupling must be affine or additive, not {coupling!r}")
    if int(levels) != levels or levels < 1:
        raise ValueError(f"denseflow levels must be a positive integer, got {levels!r}")
    aug = [augment] * levels if isinstance(augment, int) else list(augment)
    if len(aug) != levels:
        raise ValueError(f"denseflow augment needs one channel count per level ({levels}), got {augment!r}")
    for a in aug:
        if isinstance(a, bool) or not isinstance(a, int) or a <= 0:
            raise ValueError(f"denseflow augment channels must be positive integers, got {augment!r}")
    _check_divisible(image_shape, 2 ** levels, "denseflow")
    extra = [0] * (levels + 1)          # channels level l adds at its input resolution
    for lvl in range(levels - 1, 0, -1):
        added = aug[lvl] + extra[lvl + 1]
        if added % 4:
            raise ValueError(f"denseflow augment: level {lvl} adds {added} channels at its squeezed "
                             f"resolution, which must be divisible by 4 to unsqueeze; got augment={aug}")
        extra[lvl] = added // 4
    factory = glow_factory(hidden=hidden)
    aug_factory = glow_factory(hidden=aug_hidden)

    def step(c):
        return _glow_step(c, coupling, factory, lu)

    def level(c, lvl):
        c4 = 4 * c
        m = c4 + aug[lvl]
        layers: list[Bijector] = [Squeeze(2), CrossUnitAugment(c4, aug[lvl], conditioner=aug_factory)]
        for _ in range(steps):
            layers += step(m)
        if lvl < levels - 1:
            early = m // 2
            rest = m - early
            pri = _SplitPrior(rest + extra[lvl + 1], early) if split_prior else None
            layers.append(Split(early, level(rest, lvl + 1), prior=pri))
        if lvl > 0:
            layers.append(Inverse(Squeeze(2)))
        return Sequential(*layers)

    c, h, w = image_shape
    latent = (4 * c + aug[0] + extra[1], h // 2, w // 2)
    return ImageFlow(level(c, 0), image_shape, _base(prior), scaling=scaling, alpha=alpha,
                     latent_shape=latent, **kw)


# ---------------------------------------------------------------------------------------------
# Residual flow
# ---------------------------------------------------------------------------------------------

RESFLOW_TRAIN_LOGDET = {"logdet": "unbiased", "n_exact_terms": 2, "n_hutchinson": 1}
RESFLOW_EVAL_LOGDET = {"logdet": "unbiased", "n_exact_terms": 20, "n_hutchinson": 4}


def resflow(image_shape, levels: int = 3, blocks: int = 4, hidden: int = 512,
            n_layers: int = 3, kernel_size: int = 3, coeff: float = 0.98,
            actnorm: bool = True, factor_out: bool = False, fc_blocks: int = 0,
            fc_hidden: int = 128, neumann_grad: bool = True, conv_norm: str = "frequency",
            n_power_iterations: int = 5, prior: str = "normal", scaling: str = "logit",
            alpha: float = 0.05, logdet_train: dict | None = None,
            logdet_eval: dict | None = None, activation: str = "lipswish", dense: bool = False,
            logdet_grad: str | None = None, **kw) -> ImageFlow:
    """A residual flow on images: i-ResNet (Behrmann et al., 2019, "Invertible Residual
    Networks") / Residual Flows (Chen et al., 2019, "Residual Flows for Invertible Generative
    Modeling"). ``levels`` stages of ``blocks`` x [ActNorm, :class:`~vocoflow.flows.ResidualBlock`
    (``n_layers`` spectrally normalised convolutions of ``hidden`` channels, LipSwish,
    ``coeff``)], with a squeeze between stages (and, with ``factor_out``, half of the channels
    set aside after each squeeze), then ``fc_blocks`` fully connected residual blocks on the
    flattened result. Data in logit space. ``activation`` (``lipswish`` or ``clipswish``, the
    Concatenated LipSwish of Perugachi-Diaz et al., 2021, "Invertible DenseNets with Concatenated
    LipSwish") and ``dense`` (that paper's dense residual branch, ``n_layers - 1`` dense layers
    growing by ``hidden`` (times 2 with CLipSwish) channels each, then a 1x1 layer) apply to the
    convolutional blocks; the fully connected ones keep LipSwish. ``logdet_grad`` (``backprop``,
    ``neumann``, ``neumann_memory_efficient``; default from ``neumann_grad``) chooses how the
    log-det estimator is differentiated (:class:`~vocoflow.flows.ResidualBlock`).

    Log-determinants: ``logdet_train`` (default: the unbiased Russian-roulette estimator with 2
    exact terms and 1 Hutchinson probe, Neumann-series gradients) is applied in ``train()``,
    ``logdet_eval`` (default: unbiased with 20 exact terms and 4 probes; ``{"logdet":
    "exact"}`` for tiny images) in ``eval()``.

    >>> model = resflow((1, 4, 4), levels=2, blocks=1, hidden=8)
    >>> model.sample_images(2).shape
    torch.Size([2, 1, 4, 4])
    """
    _check_divisible(image_shape, 2 ** (levels - 1), "resflow")
    block_kw = dict(n_layers=n_layers, coeff=coeff, neumann_grad=neumann_grad,
                    n_power_iterations=n_power_iterations, logdet_grad=logdet_grad)

    def res_blocks(c, ndim, width, kernel):
        out: list[Bijector] = []
        for _ in range(blocks if ndim else fc_blocks):
            if actnorm:
                out.append(ActNorm(c))
            branch = dict(activation=activation, dense=dense) if ndim else {}
            out.append(ResidualBlock(c, hidden=width, kernel_size=kernel, ndim=ndim,
                                     conv_norm=conv_norm if ndim else "frequency", **branch, **block_kw))
        return out

    def stage(c, h, w, lvl):
        layers = res_blocks(c, 2, hidden, kernel_size)
        if lvl < levels - 1:
            layers.append(Squeeze(2))
            c4, h2, w2 = 4 * c, h // 2, w // 2
            if factor_out:
                early = c4 // 2
                layers.append(Split(early, stage(c4 - early, h2, w2, lvl + 1)))
            else:
                layers.append(stage(c4, h2, w2, lvl + 1))
            layers.append(Inverse(Squeeze(2)))
        elif fc_blocks:
            shape = (c, h, w)
            layers.append(Flatten(shape))
            layers += res_blocks(c * h * w, 0, fc_hidden, 1)
            layers.append(Inverse(Flatten(shape)))
        return Sequential(*layers)

    c, h, w = image_shape
    return ImageFlow(stage(c, h, w, 0), image_shape, _base(prior), scaling=scaling, alpha=alpha,
                     logdet_train=logdet_train or RESFLOW_TRAIN_LOGDET,
                     logdet_eval=logdet_eval or RESFLOW_EVAL_LOGDET, **kw)


# ---------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------

# model.type -> the builder function (trained by the "image" task)
IMAGE_MODELS = ClassChoices("image model type")
for _builder in (nice, realnvp, glow, denseflow, resflow):
    IMAGE_MODELS.register(_builder.__name__, _builder, task="image")
del _builder


def build_image_flow(config: dict, image_shape) -> ImageFlow:
    """Build a model from ``{"type": "nice"|"realnvp"|"glow"|"denseflow"|"resflow", **options}``.

    Common options: ``prior`` (normal, logistic, uniform, student_t), ``scaling`` (centered, unit,
    logit), ``alpha`` (logit), ``dequantization`` (``uniform`` or ``variational``, with
    ``dequantizer: {n_couplings, hidden}``). Unknown options raise ``ValueError``.

    >>> build_image_flow({"type": "nice", "hidden": 4, "n_hidden_layers": 1}, (1, 2, 2)).dims
    4
    """
    cfg = dict(config)
    kind = cfg.pop("type", None)
    if kind not in IMAGE_MODELS:
        raise ValueError(f"model.type must be one of {tuple(IMAGE_MODELS)}, not {kind!r}")
    builder = IMAGE_MODELS.get(kind).cls
    deq = cfg.pop("dequantization", "uniform")
    deq_opts = dict(cfg.pop("dequantizer", None) or {})
    if deq not in ("uniform", "variational"):
        raise ValueError(f"model.dequantization must be uniform or variational, not {deq!r}")
    image_shape = tuple(int(s) for s in image_shape)
    dequantizer = VariationalDequantizer(image_shape[0], **deq_opts) if deq == "variational" else None
    import inspect

    allowed = set(inspect.signature(builder).parameters) - {"image_shape", "kw"}
    unknown = set(cfg) - allowed
    if unknown:
        raise ValueError(f"unknown option(s) for model type {kind!r}: {sorted(unknown)}; "
                         f"allowed: {sorted(allowed)}")
    return builder(image_shape, dequantizer=dequantizer, config=dict(config), **cfg)


def load_image_flow(path: str | Path, map_location="cpu") -> ImageFlow:
    """Load a model saved by :meth:`ImageFlow.save` (a file, or a directory with model.pt)."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.pt"
    blob = torch.load(str(path), map_location=map_location, weights_only=True)
    model = build_image_flow(blob["config"], blob["image_shape"])
    model.load_state_dict(blob["state_dict"])
    model.eval()
    return model
