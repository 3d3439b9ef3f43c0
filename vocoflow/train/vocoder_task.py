"""Maximum-likelihood training of flow vocoders (WaveGlow-like) as a trainer task."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import torch

from vocoflow.audio import AudioMelDataset, MelConfig
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


class PitchScore:
    """Predicted against tracked F0 over utterances: the V/UV error rate over all frames and
    the F0 RMSE (Hz) over the frames voiced in both."""

    def __init__(self):
        self.frames = self.voiced = 0
        self.vuv_errors = self.sq_err = 0.0

    def add(self, pred: torch.Tensor, f0: torch.Tensor) -> None:
        self.vuv_errors += float(((pred > 0) != (f0 > 0)).sum())
        both = (pred > 0) & (f0 > 0)
        self.sq_err += float(((pred[both] - f0[both]) ** 2).sum())
        self.voiced += int(both.sum())
        self.frames += f0.numel()

    @property
    def vuv_err(self) -> float:
        return self.vuv_errors / max(self.frames, 1)

    @property
    def f0_rmse_hz(self) -> float:
        return (self.sq_err / max(self.voiced, 1)) ** 0.5


class VocoderTask:
    """Fit ``p(audio | mel)`` by maximum likelihood on random aligned segments.

    ``train:`` keys used here (besides the trainer's own): ``segment_length`` (samples),
    ``sigma`` (latent standard deviation, 1.0 in WaveGlow), ``dequantize`` (add uniform noise of
    one 16-bit step, default true), ``dev_utterances`` (how many dev utterances to score),
    ``dev_max_seconds`` (crop long dev utterances), ``media_utterances`` (TensorBoard audio),
    ``short`` (``pad`` or ``skip`` utterances shorter than a segment).

    Source-filter training (models with an excitation need a dump with ``f0.scp``, see
    ``vocoflow preprocess --pitch``): the excitation is made from the tracked F0 and the model's
    pitch predictor is fitted to it with weight ``pitch_weight`` (default 1; 0 keeps it as
    pre-fitted). With ``pitch_prefit_steps`` > 0 (default 0) the predictor is first fitted alone
    on random crops of the whole training set (``pitch_prefit_frames`` frames, default 64;
    ``pitch_prefit_batch`` crops, default 16; Adam at ``pitch_prefit_lr``, default 2e-3, cosine
    to a tenth), which is cheap (mels only) and skipped on resume; its dev V/UV error and F0
    RMSE against the tracker are logged. A model with ``source: mel`` gets the training
    dump's normalisation statistics so that its source sees the raw mel. A spectral loss
    on samples drawn through the inverse pass at temperature ``spectral_sigma`` (default 0.6)
    is added with ``spectral_weight`` (MR-STFT, 0 = off, the default) and ``mel_loss_weight``
    (log-mel L1, default: equal to ``spectral_weight``), every ``spectral_every`` steps
    (default 1). The NLL is always computed, logged and kept in the loss (``nll_weight``,
    default 1). A model with ``prior: mel`` gets its prior fitted to the frame energy of the
    first ``prior_init_utterances`` (default 64; 0 = zero initialisation) training utterances.
    """

    def __init__(self, config: dict, train_dump: str | os.PathLike,
                 dev_dump: str | os.PathLike | None = None, *,
                 train_feats_scp: str | os.PathLike | None = None):
        self.config = config
        self.train_dump = Path(train_dump)
        # TTS-predicted (GTA) mels replacing the training dump's (see vocoflow.train.gta)
        self.train_feats_scp = train_feats_scp
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
        self.spectral_weight = float(tr.get("spectral_weight", 0.0))
        self.mel_loss_weight = float(tr.get("mel_loss_weight", self.spectral_weight))
        self.spectral_sigma = float(tr.get("spectral_sigma", 0.6))
        self.spectral_every = int(tr.get("spectral_every", 1))
        self.pitch_weight = float(tr.get("pitch_weight", 1.0))
        self.nll_weight = float(tr.get("nll_weight", 1.0))
        self.prior_init_utterances = int(tr.get("prior_init_utterances", 64))
        self.pitch_prefit_steps = int(tr.get("pitch_prefit_steps", 0))
        self.pitch_prefit_frames = int(tr.get("pitch_prefit_frames", 64))
        self.pitch_prefit_batch = int(tr.get("pitch_prefit_batch", 16))
        self.pitch_prefit_lr = float(tr.get("pitch_prefit_lr", 2e-3))
        if self.spectral_every < 1:
            raise ConfigError(f"train.spectral_every must be >= 1, got {self.spectral_every}")
        self._spectral = None
        if self.spectral_weight > 0:
            from .losses import stft_resolutions

            longest = max(n for n, _, _ in stft_resolutions(self.features.sample_rate))
            if self.segment_length <= longest // 2:
                raise ConfigError(f"train.segment_length {self.segment_length} is too short for the "
                                  f"spectral loss (its largest STFT has {longest} points; need "
                                  f"more than {longest // 2} samples)")
        self.uses_f0 = bool(int((config.get("model") or {}).get("excitation_harmonics", 0) or 0))
        if self.uses_f0:
            for dump in (self.train_dump, self.dev_dump):
                if dump is not None and not (dump / "f0.scp").is_file():
                    raise ConfigError(
                        f"{dump}: no f0.scp, but the model is conditioned on an excitation "
                        "(model.excitation_harmonics > 0): preprocess with --pitch dio "
                        "(the recipes' stage 1 does) or set excitation_harmonics: 0")
        self._train = None
        self._dev = None
        stats = self.train_dump / "norm_stats.npz"
        self.stats_path = stats if stats.is_file() else None

    # -- trainer protocol ------------------------------------------------------------------
    def build_model(self):
        torch.manual_seed(self.seed)
        model = build_vocoder_model(self.config, self.features)
        if getattr(model, "pitch", None) is not None:
            mean, std, n = self.lf0_statistics()
            model.pitch.set_statistics(mean, std)
            log.info("log-F0 statistics of %s: mean %.3f (%.1f Hz), std %.3f over %d voiced frames",
                     self.train_dump, mean, float(torch.tensor(mean).exp()), std, n)
            if self.pitch_prefit_steps > 0 and not getattr(self, "resuming", False):
                stats = self.prefit_pitch(model)
                log.info("pitch predictor pre-fitted for %d steps: %s", self.pitch_prefit_steps,
                         ", ".join(f"{k} {v:.4g}" for k, v in stats.items()))
        self.give_source_statistics(model)
        if getattr(model, "prior_net", None) is not None and self.prior_init_utterances > 0:
            rmse, n = self.fit_prior(model)
            log.info("mel prior fitted to the frame energy of %d frames (NLL %.3f nats/sample "
                     "lower than N(0, sigma^2))", n, rmse)
        return model

    def fit_prior(self, model, iterations: int = 200):
        """Data-dependent initialisation of the mel prior (PriorGrad-style): the per-frame
        log-scale is a linear function of the frame's mel; fit it by maximum likelihood of the
        frames' samples under ``N(0, (sigma * s_t)^2)`` over the first
        ``prior_init_utterances`` training utterances (a convex problem: L-BFGS). At
        initialisation the flow is close to an orthogonal map, so this is the likelihood the
        prior starts the flow at. Returns ``(mean NLL gain per sample in nats, frames used)``."""
        ds = self.train_dataset()
        hop = self.features.hop_length
        xs, ms = [], []
        for u in ds.utt_ids[: self.prior_init_utterances]:
            audio, mel = ds.load(u)  # mel (frames, n_mels) in the dump's (model's) space
            frames = mel.shape[0]
            a = torch.as_tensor(audio[: frames * hop], dtype=torch.float64).reshape(frames, hop)
            ms.append(a.pow(2).mean(dim=1))
            xs.append(torch.tensor(mel, dtype=torch.float64))
        x, msq = torch.cat(xs), torch.cat(ms) / self.sigma ** 2
        w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
        b = torch.zeros((), dtype=torch.float64, requires_grad=True)
        c = model.config.prior_clamp

        def nll():  # per sample, up to the constant; the soft clamp as in the model
            ls = c * torch.tanh((x @ w + b) / c)
            return (0.5 * msq * torch.exp(-2 * ls) + ls).mean()

        with torch.no_grad():
            start = nll().item()
            # start from the mean energy
            b.fill_(0.5 * float(torch.log(msq.mean().clamp_min(1e-12))))
        opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=iterations, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = nll()
            loss.backward()
            return loss

        opt.step(closure)
        with torch.no_grad():
            end = nll().item()
        with torch.no_grad():
            model.prior_net.weight.copy_(w.detach().reshape(model.prior_net.weight.shape))
            model.prior_net.bias.copy_(b.detach().reshape(1))
        return start - end, len(x)

    def give_source_statistics(self, model) -> None:
        """A model with ``source: mel`` trained on normalised features gets their statistics
        (its source un-normalises the mel with them)."""
        if getattr(model, "source", None) is not None and self.stats_path is not None:
            from vocoflow.audio.stats import Stats

            stats = Stats.load(self.stats_path)
            model.source.set_mel_statistics(stats.mean, stats.scale)
            log.info("mel source: un-normalises the features with %s", self.stats_path)

    def _pitch_tracks(self, ds):
        """``[(mel (n_mels, frames) float32, f0 (frames,))]`` of every utterance of ``ds``."""
        out = []
        for u in ds.utt_ids:
            _, mel = ds.load(u)
            out.append((torch.tensor(mel.T, dtype=torch.float32),
                        torch.tensor(ds.load_f0(u, mel.shape[0]), dtype=torch.float32)))
        return out

    def prefit_pitch(self, model) -> dict:
        """Fit the pitch predictor alone before the flow trains (``train.pitch_prefit_steps``):
        it sees only mels, so whole-corpus passes are cheap. Adam (``pitch_prefit_lr``, cosine
        to a tenth) on ``pitch_prefit_batch`` random crops of ``pitch_prefit_frames`` frames of
        the training utterances; returns the dev set's V/UV error and F0 RMSE (Hz, frames voiced
        in both) against the tracker, and the last training loss."""
        from tqdm import tqdm

        pitch = model.pitch
        tracks = self._pitch_tracks(self.train_dataset())
        crop = self.pitch_prefit_frames
        g = torch.Generator().manual_seed(self.seed + 17)
        opt = torch.optim.Adam(pitch.parameters(), lr=self.pitch_prefit_lr)
        steps = self.pitch_prefit_steps
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda k: 0.1 + 0.45 * (1 + math.cos(math.pi * min(k, steps) / steps)))
        pitch.train()
        loss = torch.zeros(())
        for _ in tqdm(range(steps), desc="pitch prefit", leave=False, mininterval=2.0):
            mels, f0s = [], []
            for i in torch.randint(len(tracks), (self.pitch_prefit_batch,), generator=g).tolist():
                mel, f0 = tracks[i]
                n = mel.shape[-1]
                if n < crop:  # short utterance: pad (unvoiced, the quietest frame's mel)
                    pad = crop - n
                    mel = torch.cat([mel, mel[:, mel[0].argmin().item():][:, :1].expand(-1, pad)], 1)
                    f0 = torch.cat([f0, f0.new_zeros(pad)])
                    start = 0
                else:
                    start = int(torch.randint(n - crop + 1, (1,), generator=g))
                mels.append(mel[:, start:start + crop])
                f0s.append(f0[start:start + crop])
            loss, _ = pitch.loss(torch.stack(mels), torch.stack(f0s))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        out = {"train_loss": float(loss.detach())}
        if self.dev_dump is not None:
            out.update(self.pitch_dev_scores(pitch))
        return out

    def pitch_dev_scores(self, pitch) -> dict:
        """V/UV error and F0 RMSE (Hz) of the pitch predictor on the whole dev set."""
        from vocoflow.audio.dataset import AudioMelDataset

        ds = AudioMelDataset(self.dev_dump, segment_length=None, seed=self.seed)
        score = PitchScore()
        with torch.no_grad():
            for mel, f0 in self._pitch_tracks(ds):
                score.add(pitch.predict_f0(mel[None])[0], f0)
        return {"dev_vuv_err": score.vuv_err, "dev_f0_rmse_hz": score.f0_rmse_hz}

    def lf0_statistics(self):
        """``(mean, std, n)`` of log-F0 over the voiced frames of the training dump."""
        from vocoflow.audio.pitch import lf0_statistics

        ds = self.train_dataset()
        frames = ds.num_frames
        tracks = (ds.load_f0(u, frames[u]) if u in frames else
                  ds.load_f0(u, ds.load(u)[1].shape[0]) for u in ds.utt_ids)
        return lf0_statistics(tracks)

    def train_dataset(self):
        if self._train is None and self.train_feats_scp is not None:
            from .gta import GTADataset

            self._train = GTADataset(self.train_dump, self.train_feats_scp, self.segment_length,
                                     seed=self.seed, short=self.short)
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
        if all("f0" in it for it in items):
            return audio, mel, torch.stack([torch.as_tensor(it["f0"]) for it in items])
        return audio, mel

    def _noise(self, audio, indices, step):
        if not self.dequantize:
            return audio
        noise = torch.stack([
            torch.rand(audio.shape[1:], generator=torch.Generator().manual_seed(
                (self.seed * 1_000_003 + step) * 10_007 + int(i)))
            for i in indices]).to(audio)
        return audio + (noise - 0.5) / 32768.0

    def _f0_kwargs(self, f0):
        return {"f0": f0} if self.uses_f0 else {}

    def nll_terms(self, model, audio, mel, f0=None):
        out = model(audio, mel, sigma=self.sigma, **self._f0_kwargs(f0))
        return -out["log_prob"] / audio.shape[-1]

    def spectral_loss(self):
        if self._spectral is None:
            from .spectral_loss import SampleSpectralLoss

            self._spectral = SampleSpectralLoss(self.features, stft_weight=1.0,
                                                mel_weight=self.mel_loss_weight / self.spectral_weight
                                                if self.spectral_weight else 0.0)
        return self._spectral

    def loss(self, model, batch, indices, step):
        audio, mel, f0 = (*batch, None) if len(batch) == 2 else batch
        if self.uses_f0 and f0 is None:
            raise ConfigError("the model needs F0 but the batch has none (dump without f0.scp)")
        spectral = self.spectral_weight > 0 and step % self.spectral_every == 0
        pitch = self.uses_f0 and self.pitch_weight > 0
        noise = None
        if spectral:  # latent noise of the sample, a function of (seed, step, item)
            g = getattr(model, "module", model).config.n_group
            noise = torch.stack([
                torch.randn(g, audio.shape[-1] // g, generator=torch.Generator().manual_seed(
                    (self.seed * 7919 + step) * 10_009 + int(i)))
                for i in indices]).to(audio)
        x = self._noise(audio, indices, step)
        if not (spectral or pitch):  # plain maximum likelihood (also the teacher task's path)
            out = None
            nll = self.nll_terms(model, x, mel, **self._f0_kwargs(f0)).mean()
        else:
            out = model(x, mel, sigma=self.sigma, sample_sigma=self.spectral_sigma if spectral else None,
                        noise=noise, pitch_loss=pitch, **self._f0_kwargs(f0))
            nll = (-out["log_prob"] / audio.shape[-1]).mean()
        total = self.nll_weight * nll
        logs = {"nll": nll.item()}
        if spectral:
            sl, parts = self.spectral_loss().to(audio.device)(out["sample"], audio)
            total = total + self.spectral_weight * sl
            logs.update({"spec": float(sl.detach()), **parts})
        if pitch:
            total = total + self.pitch_weight * out["pitch_loss"]
            logs.update(out["pitch_stats"])
        return total, logs

    def data_init(self, model, batch, indices):
        audio, mel, f0 = (*batch, None) if len(batch) == 2 else batch
        model.train()
        with torch.no_grad():
            model(audio, mel, **self._f0_kwargs(f0))

    def _dev_items(self):
        if self._dev is None:
            if self.dev_dump is None:
                self._dev = []
            else:
                ds = AudioMelDataset(self.dev_dump, None)
                n = min(len(ds), self.dev_utterances)
                max_frames = self.features.segment_frames(int(self.dev_max_seconds * self.features.sample_rate))
                items = []
                for i in range(n):
                    it = ds[i]
                    frames = min(it["mel"].shape[-1], max_frames)
                    f0 = torch.as_tensor(it["f0"][:frames]) if "f0" in it else None
                    items.append((it["utt_id"], torch.as_tensor(it["audio"][: self.features.num_samples(frames)]),
                                  torch.as_tensor(it["mel"][:, :frames]), f0))
                self._dev = items
        return self._dev

    def validate(self, model):
        items = self._dev_items()
        if not items:
            return {}
        total, samples = 0.0, 0
        score = PitchScore()
        for _, audio, mel, f0 in items:
            kw = self._f0_kwargs(None if f0 is None else f0[None])
            nll = self.nll_terms(model, audio[None], mel[None], **kw)
            total += float(nll.detach().sum()) * audio.shape[-1]
            samples += audio.shape[-1]
            if self.uses_f0 and f0 is not None:  # the pitch predictor against the tracker
                score.add(model.predict_f0(mel[None])[0], f0)
        out = {"nll": total / samples}
        if score.frames:
            out["pitch_vuv_err"] = score.vuv_err
            out["pitch_f0_rmse_hz"] = score.f0_rmse_hz
        return out

    def log_media(self, model, writer, step):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        sr = self.features.sample_rate
        for utt, audio, mel, _ in self._dev_items()[: self.media_utterances]:
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
