"""Maximum-likelihood training of flow vocoders (WaveGlow-like) as a trainer task."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from vocoflow.audio import AudioMelDataset, MelConfig
from vocoflow.flows import Normal
from vocoflow.vocoders import VOCODER_MODELS, features_from_config

__all__ = ["VocoderTask", "build_vocoder_model", "ConfigError"]

log = logging.getLogger("vocoflow.train")


class ConfigError(ValueError):
    """A training configuration that cannot work with the given data."""


def build_vocoder_model(config: dict, features: MelConfig):
    """The flow vocoder described by ``config["model"]`` for the front end ``features``."""
    from vocoflow.vocoders import build_model as build

    kind = (config.get("model") or {}).get("type", VOCODER_MODELS.default)
    choice = VOCODER_MODELS.find(kind)
    if choice is None or choice.task != "vocoder":
        raise ConfigError(f"model.type {kind!r} is not a flow vocoder this task can train "
                          f"({', '.join(VOCODER_MODELS.names(task='vocoder'))})")
    return build({**config, "features": features})


class VocoderTask:
    """Fit ``p(audio | mel)`` by maximum likelihood on random aligned segments.

    ``train:`` keys used here (besides the trainer's own): ``segment_length`` (samples),
    ``sigma`` (latent standard deviation, 1.0 in WaveGlow), ``dequantize`` (add uniform noise of
    one 16-bit step, default true), ``dev_utterances`` (how many dev utterances to score),
    ``dev_max_seconds`` (crop long dev utterances), ``media_utterances`` (TensorBoard audio),
    ``short`` (``pad`` or ``skip`` utterances shorter than a segment).
    """

    def __init__(self, config: dict, train_dump: str | os.PathLike,
                 dev_dump: str | os.PathLike | None = None):
        self.config = config
        self.train_dump = Path(train_dump)
        self.dev_dump = Path(dev_dump) if dev_dump else None
        tr = dict(config.get("train") or {})
        self.features = MelConfig.load(self.train_dump / "feats_config.yaml")
        wanted = features_from_config(config) if config.get("features") else None
        if wanted is not None and wanted != self.features:
            diff = {k: (v, getattr(self.features, k)) for k, v in wanted.to_dict().items()
                    if getattr(self.features, k) != v}
            raise ConfigError(f"{self.train_dump}: the dump's features differ from the config's "
                              f"features section (config, dump): {diff}")
        hop = self.features.hop_length
        self.segment_length = int(tr.get("segment_length", 16000))
        if self.segment_length % hop:
            raise ConfigError(f"train.segment_length {self.segment_length} is not a multiple of "
                              f"the hop length {hop}")
        self.sigma = float(tr.get("sigma", 1.0))
        self.dequantize = bool(tr.get("dequantize", True))
        self.seed = int(tr.get("seed", 1234))
        self.short = tr.get("short", "pad")
        self.dev_utterances = int(tr.get("dev_utterances", 8))
        self.dev_max_seconds = float(tr.get("dev_max_seconds", 4.0))
        self.media_utterances = int(tr.get("media_utterances", 2))
        self._train = None
        self._dev = None
        stats = self.train_dump / "norm_stats.npz"
        self.stats_path = stats if stats.is_file() else None

    # -- trainer protocol ------------------------------------------------------------------
    def build_model(self):
        torch.manual_seed(self.seed)
        return build_vocoder_model(self.config, self.features)

    def train_dataset(self):
        if self._train is None:
            self._train = AudioMelDataset(self.train_dump, self.segment_length, seed=self.seed,
                                          short=self.short)
        return self._train

    def set_epoch(self, epoch: int) -> None:
        self.train_dataset().set_epoch(epoch)

    @staticmethod
    def collate(items):
        audio = torch.stack([torch.as_tensor(it["audio"]) for it in items])
        mel = torch.stack([torch.as_tensor(it["mel"]) for it in items])
        return audio, mel

    def _noise(self, audio, indices, step):
        if not self.dequantize:
            return audio
        noise = torch.stack([
            torch.rand(audio.shape[1:], generator=torch.Generator().manual_seed(
                (self.seed * 1_000_003 + step) * 10_007 + int(i)))
            for i in indices]).to(audio)
        return audio + (noise - 0.5) / 32768.0

    def nll_terms(self, model, audio, mel):
        z, logdet = model(audio, mel)
        return -(Normal(self.sigma).log_prob(z.float()) + logdet.float()) / audio.shape[-1]

    def loss(self, model, batch, indices, step):
        audio, mel = batch
        nll = self.nll_terms(model, self._noise(audio, indices, step), mel).mean()
        return nll, {"nll": nll.item()}

    def data_init(self, model, batch, indices):
        audio, mel = batch
        model.train()
        with torch.no_grad():
            model(audio, mel)

    def _dev_items(self):
        if self._dev is None:
            if self.dev_dump is None:
                self._dev = []
            else:
                ds = AudioMelDataset(self.dev_dump, None)
                n = min(len(ds), self.dev_utterances)
                hop = self.features.hop_length
                max_frames = int(self.dev_max_seconds * self.features.sample_rate) // hop
                items = []
                for i in range(n):
                    it = ds[i]
                    frames = min(it["mel"].shape[-1], max_frames)
                    items.append((it["utt_id"], torch.as_tensor(it["audio"][: frames * hop]),
                                  torch.as_tensor(it["mel"][:, :frames])))
                self._dev = items
        return self._dev

    def validate(self, model):
        items = self._dev_items()
        if not items:
            return {}
        total, samples = 0.0, 0
        for _, audio, mel in items:
            nll = self.nll_terms(model, audio[None], mel[None])
            total += float(nll.sum()) * audio.shape[-1]
            samples += audio.shape[-1]
        return {"nll": total / samples}

    def log_media(self, model, writer, step):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        sr = self.features.sample_rate
        for utt, audio, mel in self._dev_items()[: self.media_utterances]:
            wav = model.infer(mel[None], sigma=0.6,
                              generator=torch.Generator().manual_seed(0))[0].clamp(-1, 1)
            writer.add_audio(f"dev/{utt}/generated", wav[None], step, sample_rate=sr)
            if step <= 1 or getattr(self, "_logged_ref", set()).isdisjoint({utt}):
                writer.add_audio(f"dev/{utt}/reference", audio[None], step, sample_rate=sr)
                self._logged_ref = getattr(self, "_logged_ref", set()) | {utt}
            fig, ax = plt.subplots(figsize=(8, 3))
            ax.imshow(mel.numpy(), origin="lower", aspect="auto", cmap="magma")
            ax.set_title(f"{utt} mel")
            writer.add_figure(f"dev/{utt}/mel", fig, step)
            plt.close(fig)

    def export(self, model, out_dir):
        from vocoflow.vocoders import save_vocoder

        stats = None
        if self.stats_path is not None:
            from vocoflow.audio import Stats

            stats = Stats.load(self.stats_path)
        save_vocoder(model, self.export_config(), out_dir, stats=stats)

    def export_config(self) -> dict:
        cfg = {k: v for k, v in self.config.items() if k not in ("features",)}
        cfg["features"] = self.features.to_dict()
        cfg.setdefault("synthesis", {"sigma": 0.6, "denoise": 0.0})
        return cfg
