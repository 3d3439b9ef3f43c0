"""Fine-tuning: ``vocoflow train --init-from DIR`` starts from the weights of a saved vocoder.

DIR is any vocoder directory (one written by ``vocoflow train``, ``Vocoder.save_pretrained``
or ``vocoflow import-waveglow``). The run gets a new optimizer, LR schedule and step counter
from the config's ``train:`` section; only the model's weights (and buffers: ActNorm state,
pitch statistics, the mel prior) come from DIR, so no data-dependent initialisation is redone.

Compatibility is checked before training starts (:func:`check_init_from`):

* the config's ``model:`` section, when given, must resolve to DIR's (a missing one is taken
  from DIR), and so must ``features:`` when given;
* the training dump's front end (``feats_config.yaml``) must equal DIR's features;
* the dump's feature space must be DIR's: a dump normalised with ``norm_stats.npz`` for a
  vocoder trained on normalised features with the same statistics (DIR's ``stats.npz``), an
  un-normalised dump for one trained on raw log-mels.

Each mismatch is one error line naming DIR and the differing keys. The exported vocoder keeps
DIR's statistics and ``normalize`` flag and records ``training.init_from`` (DIR) and
``training.init_from_weights_sha256``.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np

from vocoflow.vocoders import VOCODER_MODELS, VocoderError, model_config_from, read_vocoder_dir

from .vocoder_task import ConfigError

__all__ = ["InitFrom", "FineTuneTask", "check_init_from", "config_with_init"]

log = logging.getLogger("vocoflow.train")

#: statistics closer than this (relative, per bin) count as the same
STATS_RTOL = 1e-4


def _error(directory: Path, e: Exception) -> ConfigError:
    hint = ""
    if (directory / "model" / "config.yaml").is_file():
        hint = f" (an experiment directory? its vocoder is {directory / 'model'})"
    return ConfigError(f"--init-from {e}{hint}")


def _read(directory: Path):
    try:
        return read_vocoder_dir(directory)
    except VocoderError as e:
        raise _error(directory, e) from None


def config_with_init(config: dict, init_dir) -> dict:
    """``config`` with the ``model:`` section taken from DIR's ``config.yaml`` when it has none
    (a given one is checked by :func:`check_init_from`; the features are the training dump's,
    checked against DIR's there too)."""
    from vocoflow.vocoders.checkpoint import read_config

    try:
        doc = read_config(Path(init_dir))
    except VocoderError as e:
        raise _error(Path(init_dir), e) from None
    out = dict(config)
    if not out.get("model"):
        out["model"] = dict(doc["model"])
    return out


def _differences(a: dict, b: dict) -> list[str]:
    keys = sorted(set(a) | set(b))
    return [f"{k} ({a.get(k)!r} vs {b.get(k)!r})" for k in keys if a.get(k) != b.get(k)]


def _weights_sha256(directory: Path) -> str:
    from vocoflow.vocoders.checkpoint import weights_file

    h = hashlib.sha256()
    with open(weights_file(directory), "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class InitFrom:
    """The checked initialisation of a run: DIR's model (weights loaded), its statistics and
    normalisation, and the record saved with the fine-tuned vocoder."""

    def __init__(self, directory, saved, sha256: str):
        self.directory = Path(directory)
        self.saved = saved
        self.sha256 = sha256

    @property
    def model(self):
        return self.saved.model

    @property
    def stats(self):
        return self.saved.stats

    @property
    def normalize(self) -> bool:
        return self.saved.normalize

    def record(self) -> dict:
        return {"init_from": str(self.directory.resolve()),
                "init_from_weights_sha256": self.sha256}


def check_init_from(init_dir, config: dict, task) -> InitFrom:
    """Read DIR and check it against the training ``config`` and the task's training dump
    (``task.features``, ``task.stats_path``, ``task.train_dump``); :class:`ConfigError` names
    DIR and what differs."""
    directory = Path(init_dir)
    saved = _read(directory)
    where = f"--init-from {directory}"
    kind = saved.config["model"].get("type", VOCODER_MODELS.default)
    trainable = VOCODER_MODELS.names(task="vocoder") + VOCODER_MODELS.names(task="teacher")
    if kind not in trainable:
        raise ConfigError(f"{where}: a {kind} model cannot be fine-tuned by vocoflow train "
                          f"(it trains {', '.join(trainable)})")
    diff = _differences(task.features.to_dict(), saved.features.to_dict())
    if diff:
        raise ConfigError(f"{where}: the features of {task.train_dump} differ from the saved "
                          f"vocoder's (dump vs DIR): {', '.join(diff)}; preprocess with "
                          f"--config {directory / 'config.yaml'}")
    want = {"type": (config.get("model") or {}).get("type", VOCODER_MODELS.default)}
    try:
        want.update(model_config_from({"features": task.features, "model": config["model"]}).to_dict())
    except (TypeError, ValueError) as e:
        raise ConfigError(f"model: {e}") from None
    have = {"type": kind, **model_config_from(saved.config).to_dict()}
    diff = _differences(want, have)
    if diff:
        raise ConfigError(f"{where}: the config's model differs from the saved vocoder's "
                          f"(config vs DIR): {', '.join(diff)}")
    _check_feature_space(where, directory, saved, task)
    return InitFrom(directory, saved, _weights_sha256(directory))


def _check_feature_space(where, directory, saved, task):
    dump = task.train_dump
    if task.stats_path is None:
        if saved.normalize:
            raise ConfigError(f"{where}: the vocoder was trained on normalised features but "
                              f"{dump} is not normalised (no norm_stats.npz): normalise it with "
                              f"`vocoflow normalize --stats {directory / 'stats.npz'}`")
        return
    if not saved.normalize:
        raise ConfigError(f"{where}: the vocoder was trained on raw log-mels but {dump} is "
                          f"normalised ({task.stats_path}): train on the un-normalised dump")
    from vocoflow.audio import Stats

    stats = Stats.load(task.stats_path)
    mean, scale = saved.stats
    dm = float(np.max(np.abs(np.asarray(stats.mean) - mean) / np.maximum(np.abs(scale), 1e-12)))
    ds = float(np.max(np.abs(np.asarray(stats.scale) / scale - 1)))
    if dm > STATS_RTOL or ds > STATS_RTOL:
        raise ConfigError(f"{where}: {task.stats_path} differs from the vocoder's statistics "
                          f"{directory / 'stats.npz'} (mean by up to {dm:.3g} scales, scale by up "
                          f"to {100 * ds:.3g}%): normalise the dump with `vocoflow normalize "
                          f"--stats {directory / 'stats.npz'}`")


class FineTuneTask:
    """A training task (``VocoderTask`` / ``TeacherTask``) whose model starts as DIR's.

    Everything but the model, the data-dependent initialisation (none: it came with DIR) and the
    export (DIR's statistics, the ``init_from`` record) is the wrapped task's.
    """

    def __init__(self, task, init: InitFrom):
        self.task = task
        self.init = init

    def __getattr__(self, name):
        return getattr(self.task, name)

    def build_model(self):
        model = self.init.model
        for p in model.parameters():
            p.requires_grad_(True)
        log.info("initialised from %s (weights sha256 %s)", self.init.directory,
                 self.init.sha256[:12])
        return model.train()

    def data_init(self, model, batch, indices):  # the weights come from DIR
        return None

    def export(self, model, out_dir):
        from vocoflow.vocoders import save_vocoder

        save_vocoder(model, self.task.export_config(), out_dir, stats=self.init.stats,
                     normalize=self.init.normalize, info=self.init.record())
