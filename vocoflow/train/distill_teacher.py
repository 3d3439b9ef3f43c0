"""The frozen teacher of a distillation: a saved vocoder directory whose model type can teach
(:data:`~vocoflow.vocoders.VOCODER_MODELS`), checked against the training dump."""

from __future__ import annotations

import numpy as np

from vocoflow.audio import Stats
from vocoflow.vocoders import VOCODER_MODELS, VocoderError
from vocoflow.vocoders import load as load_vocoder

from .vocoder_task import ConfigError

__all__ = ["load_teacher"]


def load_teacher(directory, features=None, dump_stats=None):
    """Load a saved vocoder directory as a frozen teacher: ``(model, default_sigma)``.

    Checks that its features equal ``features`` and that its input normalisation matches the
    training dump's (``dump_stats``: the dump's ``norm_stats.npz`` or ``None`` for raw)."""
    try:
        voc = load_vocoder(directory)
    except VocoderError as e:
        raise ConfigError(f"--teacher: {e}") from None
    choice = VOCODER_MODELS.of(voc.model)
    if not choice.has("can_teach"):
        raise ConfigError(f"teacher {directory}: a {choice.name} cannot teach (teachers: "
                          f"{', '.join(VOCODER_MODELS.names(can_teach=True))})")
    if features is not None and voc.features != features:
        diff = {k: (v, getattr(features, k)) for k, v in voc.features.to_dict().items()
                if getattr(features, k) != v}
        raise ConfigError(f"teacher {directory}: its features differ from the training dump's "
                          f"(teacher, dump): {diff}")
    if dump_stats is not None:
        if not voc.normalize:
            raise ConfigError(f"teacher {directory} was trained on raw log-mels but the dump is "
                              "normalised")
        try:
            stats = Stats.load(dump_stats)
        except (OSError, ValueError) as e:
            raise ConfigError(str(e)) from None
        if not (np.allclose(stats.mean, voc.stats_mean, atol=1e-5)
                and np.allclose(stats.scale, voc.stats_scale, atol=1e-5)):
            raise ConfigError(f"teacher {directory}: its feature statistics differ from "
                              f"{dump_stats}")
    elif voc.normalize:
        raise ConfigError(f"teacher {directory} expects normalised mels but the dump is raw")
    model = voc.model.float().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    sigma = float((voc.config.get("train") or {}).get("sigma", 1.0) or 1.0)
    if not choice.has("parallel_sampling"):
        sigma = 1.0  # autoregressive teachers: their own scales (temperature 1)
    return model, sigma
