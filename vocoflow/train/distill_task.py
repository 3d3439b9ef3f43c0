"""Probability density distillation (Parallel WaveNet, ClariNet) as a trainer task.

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

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vocoflow.flows import gaussian_log_prob
from vocoflow.train.losses import (
    MultiResolutionSTFTLoss, closed_form_kl, log_scale_loss, monte_carlo_kl, stft_resolutions,
)

from .vocoder_task import ConfigError, VocoderTask

__all__ = ["DistillLossConfig", "DistillObjective", "DistillTask", "load_teacher", "score_systems"]

log = logging.getLogger("vocoflow.train")


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

    def kl_terms(self, model, mel, noise, forward_noise=None):
        """``(kl per item (B,), student output, teacher log-scales or None)``, nats/sample."""
        sigma = self.teacher_sigma
        out = model(noise, mel)
        x = out["audio"]
        t = x.shape[-1]
        ls_p = None
        if self.cfg.direction == "forward":
            with torch.no_grad():
                xp = self.teacher.infer(mel, sigma=sigma,
                                        noise=noise if forward_noise is None else forward_noise)
                log_p = self.teacher.log_prob(xp, mel, sigma=sigma)
            log_q = model(None, mel, data=xp)["log_prob"]
            kl = (log_p - log_q) / t
        elif self.closed or self.cfg.log_scale_weight > 0:
            mu_p, ls_p = self.teacher.gaussian_params(x, mel, sigma=sigma)
            if self.closed:
                kl = closed_form_kl(out["mu"], out["log_scale"], mu_p, ls_p).mean(dim=-1)
            else:
                log_p = gaussian_log_prob(x, mu_p, ls_p)
                kl = monte_carlo_kl(out["log_q"], log_p).mean(dim=-1)
        else:
            log_p = self.teacher.log_prob(x, mel, sigma=sigma)
            kl = monte_carlo_kl(out["log_q"].sum(dim=-1), log_p) / t
        return kl, out, ls_p

    def __call__(self, model, audio, mel, noise, forward_noise=None):
        cfg = self.cfg
        s = noise.shape[0] // mel.shape[0]
        if s > 1:
            mel, audio = mel.repeat(s, 1, 1), audio.repeat(s, 1)
        kl, out, ls_p = self.kl_terms(model, mel, noise, forward_noise)
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


def _stats_of(path):
    with np.load(path) as z:
        return np.asarray(z["mean"], np.float64), np.asarray(z["scale"], np.float64)


def load_teacher(directory, features=None, dump_stats=None):
    """Load a saved vocoder directory as a frozen teacher: ``(model, default_sigma)``.

    Checks that its features equal ``features`` and that its input normalisation matches the
    training dump's (``dump_stats``: the dump's ``norm_stats.npz`` or ``None`` for raw)."""
    from vocoflow.vocoders import VocoderError
    from vocoflow.vocoders import load as load_vocoder

    try:
        voc = load_vocoder(directory)
    except VocoderError as e:
        raise ConfigError(f"--teacher: {e}") from None
    if features is not None and voc.features != features:
        diff = {k: (v, getattr(features, k)) for k, v in voc.features.to_dict().items()
                if getattr(features, k) != v}
        raise ConfigError(f"teacher {directory}: its features differ from the training dump's "
                          f"(teacher, dump): {diff}")
    if dump_stats is not None:
        if not voc.normalize:
            raise ConfigError(f"teacher {directory} was trained on raw log-mels but the dump is "
                              "normalised")
        mean, scale = _stats_of(dump_stats)
        if not (np.allclose(mean, voc.stats_mean, atol=1e-5)
                and np.allclose(scale, voc.stats_scale, atol=1e-5)):
            raise ConfigError(f"teacher {directory}: its feature statistics differ from "
                              f"{dump_stats}")
    elif voc.normalize:
        raise ConfigError(f"teacher {directory} expects normalised mels but the dump is raw")
    model = voc.model.float().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    sigma = float((voc.config.get("train") or {}).get("sigma", 1.0) or 1.0)
    if type(model).__name__ != "WaveGlow":
        sigma = 1.0  # autoregressive teachers: their own scales (temperature 1)
    return model, sigma


class DistillTask(VocoderTask):
    """Distil ``teacher`` (a saved vocoder directory, or a module with ``log_prob``) into the
    :class:`~vocoflow.vocoders.IAFStudent` of ``config["model"]`` (``type: iaf_student``).

    Data, segments, dev items and export as in :class:`VocoderTask`; the dev metrics are the
    same KL estimator and STFT loss on the first ``dev_utterances`` dev utterances (cropped to
    ``dev_max_seconds``) with fixed noise.
    """

    def __init__(self, config: dict, teacher, train_dump, dev_dump=None):
        super().__init__(config, train_dump, dev_dump)
        kind = (config.get("model") or {}).get("type")
        if kind != "iaf_student":
            raise ConfigError(f"distillation trains model.type iaf_student, not {kind!r}")
        self.loss_cfg = DistillLossConfig.from_train(config.get("train"))
        if isinstance(teacher, (str, os.PathLike)):
            self.teacher_dir = str(Path(teacher).resolve())
            self.teacher, sigma = load_teacher(teacher, self.features, self.stats_path)
        else:
            self.teacher_dir = None
            self.teacher, sigma = teacher, 1.0
        self.default_teacher_sigma = sigma
        self._objective = None

    def build_model(self):
        from vocoflow.vocoders.student import IAFStudent, StudentConfig

        torch.manual_seed(self.seed)
        try:
            cfg = StudentConfig.from_dict(self.config["model"], features=self.features)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"model: {e}") from None
        student = IAFStudent(cfg)
        self.objective(student)  # check the loss settings against this student now
        return student

    def objective(self, student) -> DistillObjective:
        if self._objective is None:
            student = getattr(student, "module", student)
            self._objective = DistillObjective(self.teacher, student, self.loss_cfg,
                                               self.features.sample_rate,
                                               self.default_teacher_sigma)
            log.info("distillation: KL estimator %s (%s), %d sample(s); teacher sigma %.3g",
                     self._objective.estimator, self.loss_cfg.direction, self.loss_cfg.samples,
                     self._objective.teacher_sigma)
        return self._objective

    def data_init(self, model, batch, indices):
        return None

    def _item_noise(self, indices, step, length, salt=0):
        s = self.loss_cfg.samples
        rows = []
        for k in range(s):
            for i in indices:
                seed = ((((self.seed * 1_000_003 + step) * 10_007 + int(i)) * 31 + k) * 7 + salt)
                rows.append(torch.randn(length, generator=torch.Generator().manual_seed(
                    seed % (2**63 - 1))))
        return torch.stack(rows)

    def _teacher_to(self, ref: torch.Tensor):
        p = next(self.teacher.parameters(), None)
        if p is not None and p.device != ref.device:
            self.teacher.to(ref.device)

    def loss(self, model, batch, indices, step):
        audio, mel = batch
        self._teacher_to(mel)
        obj = self.objective(model)
        noise = self._item_noise(indices, step, audio.shape[-1]).to(mel)
        fwd = None
        if self.loss_cfg.direction == "forward":
            fwd = self._item_noise(indices, step, audio.shape[-1], salt=1).to(mel)
        return obj(model, audio, mel, noise, fwd)

    def validate(self, model):
        items = self._dev_items()
        if not items:
            return {}
        self._teacher_to(next(model.parameters()))
        obj = self.objective(model)
        sums: dict[str, float] = {}
        for j, (_, audio, mel) in enumerate(items):
            g = torch.Generator().manual_seed(self.seed * 7919 + j)
            noise = torch.randn(1, audio.shape[-1], generator=g)
            fwd = torch.randn(1, audio.shape[-1], generator=g)
            dev = next(model.parameters()).device
            _, metrics = obj(model, audio[None].to(dev), mel[None].to(dev), noise.to(dev),
                             fwd.to(dev))
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + v / len(items)
        return sums

    def log_media(self, model, writer, step):
        sr = self.features.sample_rate
        sigma = float((self.config.get("synthesis") or {}).get("sigma", 1.0))
        for utt, audio, mel in self._dev_items()[: self.media_utterances]:
            wav = model.infer(mel[None], sigma=sigma,
                              generator=torch.Generator().manual_seed(0))[0].clamp(-1, 1)
            writer.add_audio(f"dev/{utt}/student", wav[None], step, sample_rate=sr)
            if not hasattr(self, "_logged_ref"):
                self._logged_ref = set()
            if utt not in self._logged_ref:
                writer.add_audio(f"dev/{utt}/reference", audio[None], step, sample_rate=sr)
                self._logged_ref.add(utt)

    def export(self, model, out_dir):
        from vocoflow.vocoders import save_vocoder

        stats = None
        if self.stats_path is not None:
            from vocoflow.audio import Stats

            stats = Stats.load(self.stats_path)
        info = {"teacher": self.teacher_dir, "kl_estimator": self.objective(model).estimator}
        save_vocoder(model, self.export_config(), out_dir, stats=stats, info=info)

    def export_config(self) -> dict:
        cfg = super().export_config()
        cfg["synthesis"] = {"sigma": 1.0, "denoise": 0.0, **(self.config.get("synthesis") or {})}
        return cfg



@torch.no_grad()
def score_systems(teacher, students: dict, dump_dir, teacher_sigma: float = 1.0,
                  resolutions="auto", max_seconds: float | None = None,
                  utterances: int | None = None, seed: int = 0) -> dict:
    """KL(student || teacher) (Monte Carlo, nats per sample) and the multi-resolution STFT loss
    against the real audio, per system, over the utterances of a dump directory.

    ``students`` maps names to models; ``"teacher"`` is added for the teacher's own samples
    (its KL is 0 by definition). Every utterance uses the same unit-normal noise for every
    system (from ``seed`` and the utterance id). Averages are weighted by samples.
    """
    from vocoflow.audio import AudioMelDataset
    from vocoflow.vocoders import noise_for

    ds = AudioMelDataset(dump_dir)
    sr, hop = ds.config.sample_rate, ds.config.hop_length
    res = stft_resolutions(sr) if resolutions in (None, "auto") else resolutions
    stft = MultiResolutionSTFTLoss(res)
    n = len(ds) if utterances is None else min(len(ds), utterances)
    totals: dict[str, dict[str, float]] = {}
    samples = 0
    for i in range(n):
        item = ds[i]
        frames = item["mel"].shape[-1]
        if max_seconds:
            frames = min(frames, max(1, int(max_seconds * sr) // hop))
        mel = item["mel"][None, :, :frames].float()
        audio = item["audio"][None, : frames * hop].float()
        noise = noise_for(item["utt_id"], seed, (1, frames * hop))
        t = audio.shape[-1]
        samples += t
        systems = {"teacher": None, **students}
        for name, model in systems.items():
            if model is None:
                x = teacher.infer(mel, sigma=teacher_sigma, noise=noise)
                kl = 0.0
            else:
                out = model(noise, mel)
                x = out["audio"]
                kl = float((out["log_q"].sum(-1) - teacher.log_prob(x, mel, sigma=teacher_sigma))[0])
            loss, parts = stft(x, audio)
            acc = totals.setdefault(name, {"kl": 0.0, "stft": 0.0, "stft_sc": 0.0, "stft_logmag": 0.0})
            acc["kl"] += kl
            acc["stft"] += float(loss) * t
            acc["stft_sc"] += parts["sc"] * t
            acc["stft_logmag"] += parts["logmag"] * t
    return {name: {k: v / samples for k, v in acc.items()} | {"utterances": n, "samples": samples}
            for name, acc in totals.items()}
