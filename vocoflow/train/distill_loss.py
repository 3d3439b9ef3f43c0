"""The probability density distillation loss (Parallel WaveNet, ClariNet).

A frozen *teacher* with a tractable density ``p(x | mel)`` (a trained WaveNet teacher, or any
vocoflow flow such as WaveGlow: exact log-density of a whole utterance in one parallel pass)
teaches an :class:`~vocoflow.vocoders.IAFStudent` ``q(x | mel)``. Per batch the student draws
``x ~ q`` in one parallel pass (reparameterised), and the loss is

    kl_weight * KL(q || p) + stft_weight * STFT(x, real audio) + log_scale_weight * reg

* ``KL(q || p) = E_q[log q(x) - log p(x)]``, in nats per sample. Estimators: ``closed``
  (ClariNet: Gaussian teacher, affine student with Gaussian noise; per-step Gaussian KL given
  the sample's past), ``mc`` (``log q(x) - log p(x)`` at the sample; any student, any teacher),
  ``auto`` (closed when possible). ``samples`` student draws per item. ``direction: forward``
  estimates ``KL(p || q) = E_p[log p - log q]`` from teacher samples instead; it needs the
  student's density of outside audio (a sequential IAF inversion) and teacher sampling, so it is
  only practical for tiny inputs (tests, toys).
* STFT: :class:`~vocoflow.train.losses.MultiResolutionSTFTLoss` (``magnitude``: spectral
  convergence + log magnitude; ``power``: Parallel WaveNet's power loss) between the student's
  sample and the real segment of the same mel.
* ``log_scale``: ClariNet's ``(log s_p - log s_q)^2`` per step (Gaussian teachers only; ``s_q``
  is the student's per-step slope ``exp(logdet_t)`` in units of the base's standard deviation).

Config (``train:`` section; ``loss:`` is a nested mapping)::

    train:
      loss:
        kl: {weight: 1.0, estimator: auto, direction: reverse, samples: 1, teacher_sigma: null}
        stft: {weight: 1.0, kind: magnitude, resolutions: auto}
        log_scale: {weight: 0.0}

``teacher_sigma`` (the teacher's temperature; default: its training ``sigma``, 1.0) lets a
student learn the tempered teacher WaveGlow samples from (e.g. 0.6).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from vocoflow.flows import gaussian_log_prob
from vocoflow.train.losses import (
    MultiResolutionSTFTLoss,
    closed_form_kl,
    log_scale_loss,
    monte_carlo_kl,
    stft_resolutions,
)

from .vocoder_task import ConfigError

__all__ = ["DistillLossConfig", "DistillObjective"]


@dataclass
class DistillLossConfig:
    """The ``train.loss`` section, flattened (see the module docstring)."""

    kl_weight: float = 1.0
    estimator: str = "auto"          # auto | closed | mc
    direction: str = "reverse"       # reverse: KL(q||p) | forward: KL(p||q)
    samples: int = 1
    teacher_sigma: float | None = None
    stft_weight: float = 1.0
    stft_kind: str = "magnitude"     # magnitude | power
    stft_resolutions: object = "auto"
    log_scale_weight: float = 0.0

    def __post_init__(self):
        if self.estimator not in ("auto", "closed", "mc"):
            raise ConfigError(f"train.loss.kl.estimator must be auto, closed or mc, not "
                              f"{self.estimator!r}")
        if self.direction not in ("reverse", "forward"):
            raise ConfigError(f"train.loss.kl.direction must be reverse or forward, not "
                              f"{self.direction!r}")
        if self.stft_kind not in ("magnitude", "power"):
            raise ConfigError(f"train.loss.stft.kind must be magnitude or power, not "
                              f"{self.stft_kind!r}")
        self.samples = int(self.samples)
        if self.samples < 1:
            raise ConfigError("train.loss.kl.samples must be >= 1")
        for name in ("kl_weight", "stft_weight", "log_scale_weight"):
            v = float(getattr(self, name))
            if v < 0:
                raise ConfigError(f"train.loss: {name} must be >= 0")
            setattr(self, name, v)
        if self.teacher_sigma is not None:
            self.teacher_sigma = float(self.teacher_sigma)

    @classmethod
    def from_train(cls, train: dict | None) -> "DistillLossConfig":
        loss = dict((train or {}).get("loss") or {})
        unknown = sorted(set(loss) - {"kl", "stft", "log_scale"})
        if unknown:
            raise ConfigError(f"train.loss: unknown key(s) {', '.join(unknown)} "
                              "(expected kl, stft, log_scale)")
        kl, stft, reg = (dict(loss.get(k) or {}) for k in ("kl", "stft", "log_scale"))
        allowed = {"kl": {"weight", "estimator", "direction", "samples", "teacher_sigma"},
                   "stft": {"weight", "kind", "resolutions"}, "log_scale": {"weight"}}
        for name, d in (("kl", kl), ("stft", stft), ("log_scale", reg)):
            bad = sorted(set(d) - allowed[name])
            if bad:
                raise ConfigError(f"train.loss.{name}: unknown key(s) {', '.join(bad)}")
        return cls(kl_weight=kl.get("weight", 1.0), estimator=kl.get("estimator", "auto"),
                   direction=kl.get("direction", "reverse"), samples=kl.get("samples", 1),
                   teacher_sigma=kl.get("teacher_sigma"), stft_weight=stft.get("weight", 1.0),
                   stft_kind=stft.get("kind", "magnitude"),
                   stft_resolutions=stft.get("resolutions", "auto"),
                   log_scale_weight=reg.get("weight", 0.0))


def _is_gaussian_teacher(teacher) -> bool:
    if not hasattr(teacher, "gaussian_params"):
        return False
    cfg = getattr(teacher, "config", None)
    return getattr(cfg, "output", "gaussian") == "gaussian"


class DistillObjective:
    """The distillation loss for one batch: ``objective(model, audio, mel, noise)``.

    ``teacher`` needs ``log_prob(audio, mel, sigma) -> (B,)``; Gaussian autoregressive teachers
    also ``gaussian_params(audio, mel, sigma) -> (mu, log_scale)`` (closed-form KL, log-scale
    regulariser); ``direction: forward`` needs ``infer(mel, sigma, noise)``. ``student`` is the
    (unwrapped) :class:`~vocoflow.vocoders.IAFStudent`, used for its configuration only; the
    loss calls ``model`` (which may be DDP-wrapped). ``noise`` is unit normal
    ``(samples * B, T)``, sample-major.
    """

    def __init__(self, teacher, student, cfg: DistillLossConfig, sample_rate: int,
                 teacher_sigma: float = 1.0):
        self.teacher = teacher
        self.cfg = cfg
        self.teacher_sigma = cfg.teacher_sigma if cfg.teacher_sigma is not None else float(teacher_sigma)
        self.student_noise = student.config.noise
        gaussian_teacher = _is_gaussian_teacher(teacher)
        closed_ok = gaussian_teacher and student.is_affine and student.config.noise == "gaussian"
        if cfg.estimator == "closed" and not closed_ok:
            raise ConfigError("train.loss.kl.estimator closed needs a Gaussian autoregressive "
                              "teacher and an affine student with gaussian noise (use mc or auto)")
        self.closed = cfg.estimator == "closed" or (cfg.estimator == "auto" and closed_ok)
        if cfg.direction == "forward":
            self.closed = False
            if not hasattr(teacher, "infer"):
                raise ConfigError("train.loss.kl.direction forward needs a teacher that samples")
        if cfg.log_scale_weight > 0 and not gaussian_teacher:
            raise ConfigError("train.loss.log_scale needs a Gaussian autoregressive teacher")
        self.stft = None
        if cfg.stft_weight > 0:
            res = cfg.stft_resolutions
            res = stft_resolutions(sample_rate) if res in (None, "auto") else res
            self.stft = MultiResolutionSTFTLoss(res, kind=cfg.stft_kind)

    @property
    def estimator(self) -> str:
        return "closed" if self.closed else "mc"

    def _student_log_scale(self, out):
        if "log_scale" in out:
            return out["log_scale"]
        # the per-step slope in units of the base's standard deviation
        base_std = 0.0 if self.student_noise == "gaussian" else math.log(math.pi / math.sqrt(3))
        return out["logdet"] + base_std

    def kl_terms(self, model, mel, noise, forward_noise=None, f0=None):
        """``(kl per item (B,), student output, teacher log-scales or None)``, nats/sample.
        ``f0`` (tracked, ``(B, frames)``) reaches the student and the teacher where they have an
        excitation (else each would use its predicted F0)."""
        sigma = self.teacher_sigma
        skw = _f0_kw(model, f0)
        tkw = _f0_kw(self.teacher, f0)
        out = model(noise, mel, **skw)
        x = out["audio"]
        t = x.shape[-1]
        ls_p = None
        if self.cfg.direction == "forward":
            with torch.no_grad():
                xp = self.teacher.infer(mel, sigma=sigma,
                                        noise=noise if forward_noise is None else forward_noise,
                                        **tkw)
                log_p = self.teacher.log_prob(xp, mel, sigma=sigma, **tkw)
            log_q = model(None, mel, data=xp, **skw)["log_prob"]
            kl = (log_p - log_q) / t
        elif self.closed or self.cfg.log_scale_weight > 0:
            mu_p, ls_p = self.teacher.gaussian_params(x, mel, sigma=sigma)
            if self.closed:
                kl = closed_form_kl(out["mu"], out["log_scale"], mu_p, ls_p).mean(dim=-1)
            else:
                log_p = gaussian_log_prob(x, mu_p, ls_p)
                kl = monte_carlo_kl(out["log_q"], log_p).mean(dim=-1)
        else:
            log_p = self.teacher.log_prob(x, mel, sigma=sigma, **tkw)
            kl = monte_carlo_kl(out["log_q"].sum(dim=-1), log_p) / t
        return kl, out, ls_p

    def __call__(self, model, audio, mel, noise, forward_noise=None, f0=None):
        cfg = self.cfg
        s = noise.shape[0] // mel.shape[0]
        if s > 1:
            mel, audio = mel.repeat(s, 1, 1), audio.repeat(s, 1)
            f0 = None if f0 is None else f0.repeat(s, 1)
        kl, out, ls_p = self.kl_terms(model, mel, noise, forward_noise, f0)
        kl = kl.mean()
        loss = cfg.kl_weight * kl
        metrics = {"kl": kl.item()}
        if self.stft is not None:
            stft, parts = self.stft(out["audio"], audio)
            loss = loss + cfg.stft_weight * stft
            metrics["stft"] = stft.item()
            metrics.update({f"stft_{k}": v for k, v in parts.items()})
        if cfg.log_scale_weight > 0:
            reg = log_scale_loss(self._student_log_scale(out), ls_p).mean()
            loss = loss + cfg.log_scale_weight * reg
            metrics["log_scale_reg"] = reg.item()
        metrics["loss"] = loss.item()
        return loss, metrics


def _f0_kw(model, f0) -> dict:
    """``{"f0": f0}`` for a model with an excitation (DDP-wrapped or not), else ``{}``."""
    m = getattr(model, "module", model)
    return {"f0": f0} if f0 is not None and getattr(m, "uses_excitation", False) else {}
