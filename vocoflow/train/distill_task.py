"""Probability density distillation (Parallel WaveNet, ClariNet) as a trainer task:
:class:`DistillTask` trains an :class:`~vocoflow.vocoders.IAFStudent` against a frozen teacher
(:func:`~vocoflow.train.distill_teacher.load_teacher`) with the loss of
:mod:`vocoflow.train.distill_loss` (its ``train.loss`` settings are described there).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from vocoflow.vocoders import VOCODER_MODELS

from .distill_loss import DistillLossConfig, DistillObjective
from .distill_teacher import load_teacher
from .vocoder_task import ConfigError, VocoderTask

__all__ = ["DistillTask"]

log = logging.getLogger("vocoflow.train")


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
        choice = VOCODER_MODELS.find(kind)
        if choice is None or choice.task != "distill":
            raise ConfigError(f"distillation trains model.type "
                              f"{' or '.join(VOCODER_MODELS.names(task='distill'))}, not {kind!r}")
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
        if student.pitch is not None:
            # the student's F0 at synthesis: the teacher's pitch predictor, copied
            tp = getattr(self.teacher, "pitch", None)
            if tp is None:
                raise ConfigError("model.excitation_harmonics > 0, but the teacher has no pitch "
                                  "predictor to give the student (distil from a teacher with an "
                                  "excitation, or set excitation_harmonics: 0)")
            try:
                student.pitch.load_state_dict(tp.state_dict())
            except RuntimeError:
                raise ConfigError("the student's pitch predictor (pitch_channels, pitch_layers) "
                                  "differs from the teacher's: give it the teacher's sizes") from None
            log.info("student: pitch predictor copied from the teacher")
        self.give_source_statistics(student)
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
        audio, mel = batch[:2]
        # a dump with F0 adds a third element: the tracked F0, for students and teachers with an
        # excitation (the others ignore it)
        f0 = batch[2] if len(batch) > 2 else None
        self._teacher_to(mel)
        obj = self.objective(model)
        noise = self._item_noise(indices, step, audio.shape[-1]).to(mel)
        fwd = None
        if self.loss_cfg.direction == "forward":
            fwd = self._item_noise(indices, step, audio.shape[-1], salt=1).to(mel)
        return obj(model, audio, mel, noise, fwd, f0=f0)

    def validate(self, model):
        items = self._dev_items()
        if not items:
            return {}
        self._teacher_to(next(model.parameters()))
        obj = self.objective(model)
        sums: dict[str, float] = {}
        for j, (_, audio, mel, f0) in enumerate(items):
            g = torch.Generator().manual_seed(self.seed * 7919 + j)
            noise = torch.randn(1, audio.shape[-1], generator=g)
            fwd = torch.randn(1, audio.shape[-1], generator=g)
            dev = next(model.parameters()).device
            _, metrics = obj(model, audio[None].to(dev), mel[None].to(dev), noise.to(dev),
                             fwd.to(dev), f0=None if f0 is None else f0[None].to(dev))
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + v / len(items)
        return sums

    def log_media(self, model, writer, step):
        sr = self.features.sample_rate
        sigma = float((self.config.get("synthesis") or {}).get("sigma", 1.0))
        for utt, audio, mel, *_ in self._dev_items()[: self.media_utterances]:
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
