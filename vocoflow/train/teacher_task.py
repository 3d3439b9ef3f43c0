"""Maximum-likelihood training of the autoregressive WaveNet teacher (teacher forcing).

Same data, noise, validation and export as :class:`~vocoflow.train.vocoder_task.VocoderTask`;
only the model (``model.type: wavenet_teacher``, :class:`~vocoflow.vocoders.WaveNetTeacher`),
its likelihood (Gaussian or mixture-of-logistics per sample, all samples in one parallel pass)
and the TensorBoard audio (the sequential sampler on ``media_seconds`` of each dev utterance)
differ. ``vocoflow train`` uses this task when the config's model type is ``wavenet_teacher``.
"""

from __future__ import annotations

import torch

from vocoflow.vocoders import VOCODER_MODELS

from .vocoder_task import ConfigError, VocoderTask

__all__ = ["TeacherTask"]


class TeacherTask(VocoderTask):
    """Fit a :class:`~vocoflow.vocoders.WaveNetTeacher` by maximum likelihood.

    Extra ``train:`` key: ``media_seconds`` (audio sampled for TensorBoard per dev utterance,
    default 0.25: the sampler makes one network step per sample).
    """

    def __init__(self, config: dict, train_dump, dev_dump=None, **kw):
        super().__init__(config, train_dump, dev_dump, **kw)
        kind = (config.get("model") or {}).get("type")
        choice = VOCODER_MODELS.find(kind)
        if choice is None or choice.task != "teacher":
            raise ConfigError(f"TeacherTask trains model.type "
                              f"{' or '.join(VOCODER_MODELS.names(task='teacher'))}, not {kind!r}")
        self.media_seconds = float((config.get("train") or {}).get("media_seconds", 0.25))

    def build_model(self):
        from vocoflow.vocoders.teacher import WaveNetTeacher, WaveNetTeacherConfig

        torch.manual_seed(self.seed)
        try:
            cfg = WaveNetTeacherConfig.from_dict(self.config["model"], features=self.features)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"model: {e}") from None
        return WaveNetTeacher(cfg)

    def nll_terms(self, model, audio, mel):
        z, logdet = model(audio, mel)  # through the (possibly DDP-wrapped) forward
        base = getattr(model, "module", model).base
        return -(base.log_prob(z.float()) + logdet.float()) / audio.shape[-1]

    def data_init(self, model, batch, indices):  # nothing data-dependent to initialise
        return None

    def log_media(self, model, writer, step):
        sr = self.features.sample_rate
        frames = max(1, self.features.segment_frames(int(self.media_seconds * sr)))
        for utt, _, mel, *_ in self._dev_items()[: self.media_utterances]:
            wav = model.infer(mel[None, :, :frames], sigma=1.0,
                              generator=torch.Generator().manual_seed(0))[0].clamp(-1, 1)
            writer.add_audio(f"dev/{utt}/teacher_sample", wav[None], step, sample_rate=sr)

    def export_config(self) -> dict:
        cfg = super().export_config()
        cfg["synthesis"] = {"sigma": 1.0, "denoise": 0.0, **(self.config.get("synthesis") or {})}
        return cfg
