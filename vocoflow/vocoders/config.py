"""Model YAML configs (``configs/waveglow_*.yaml``): reading them and building their parts.

A config has exactly these top-level keys (shared with the trainer)::

    features:   a MelConfig mapping, or {preset: NAME, **overrides}
    model:      {type: waveglow, **WaveGlowConfig fields}   (n_mels/hop_length come from features)
    train:      trainer settings (batch_size, segment_length, lr, steps, sigma, ...)
    synthesis:  {sigma: 0.6, denoise: 0.0}

>>> cfg = load_config({"features": {"preset": "asterisk16k"}, "model": {"type": "waveglow",
...                    "n_flows": 2, "n_early_every": 1, "wn_layers": 2, "wn_channels": 8}})
>>> features_from_config(cfg).sample_rate, cfg["synthesis"]["sigma"]
(16000, 0.6)
>>> build_model(cfg).config.hop_length
256
"""

from __future__ import annotations

import os

import yaml

from vocoflow.audio.mel import MelConfig

from .waveglow import WaveGlow, WaveGlowConfig
from .student import IAFStudent, StudentConfig
from .teacher import WaveNetTeacher, WaveNetTeacherConfig

__all__ = ["load_config", "features_from_config", "model_config_from", "build_model",
           "TOP_LEVEL_KEYS", "DEFAULT_SYNTHESIS", "MODEL_TYPES"]

TOP_LEVEL_KEYS = ("features", "model", "train", "synthesis")
DEFAULT_SYNTHESIS = {"sigma": 0.6, "denoise": 0.0}
MODEL_TYPES = {"waveglow": (WaveGlow, WaveGlowConfig),
               "iaf_student": (IAFStudent, StudentConfig),
               "wavenet_teacher": (WaveNetTeacher, WaveNetTeacherConfig)}


def load_config(source) -> dict:
    """Read a model config (a YAML path or an already-loaded dict) and check its layout.

    Returns a new dict with ``features``, ``model``, ``train`` and ``synthesis`` (the last two
    default to ``{}`` and :data:`DEFAULT_SYNTHESIS`). Unknown top-level keys raise ``ValueError``.
    """
    name = "<config>"
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        try:
            with open(name, encoding="utf-8") as f:
                data = yaml.safe_load(f)
        except yaml.YAMLError as e:
            raise ValueError(f"{name}: not valid YAML ({e})") from None
    else:
        data = source
    if not isinstance(data, dict):
        raise ValueError(f"{name}: a model config must be a mapping, got {type(data).__name__}")
    unknown = sorted(set(data) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise ValueError(f"{name}: unknown top-level key(s) {', '.join(unknown)} "
                         f"(expected {', '.join(TOP_LEVEL_KEYS)})")
    for key in ("features", "model"):
        if not isinstance(data.get(key), dict):
            raise ValueError(f"{name}: '{key}:' must be a mapping")
    out = {
        "features": dict(data["features"]),
        "model": dict(data["model"]),
        "train": dict(data.get("train") or {}),
        "synthesis": {**DEFAULT_SYNTHESIS, **(data.get("synthesis") or {})},
    }
    try:
        features_from_config(out)
        model_config_from(out)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name}: {e}") from None
    return out


def features_from_config(cfg: dict) -> MelConfig:
    """The :class:`MelConfig` of a config's ``features:`` section."""
    feats = cfg["features"]
    return feats if isinstance(feats, MelConfig) else MelConfig.from_dict(feats)


def model_config_from(cfg: dict):
    """The model's config dataclass (e.g. :class:`WaveGlowConfig`), with ``n_mels`` and
    ``hop_length`` taken from the features."""
    model = dict(cfg["model"])
    kind = model.get("type", "waveglow")
    if kind not in MODEL_TYPES:
        raise ValueError(f"unknown model type {kind!r} (known: {', '.join(MODEL_TYPES)})")
    return MODEL_TYPES[kind][1].from_dict(model, features=features_from_config(cfg))


def build_model(cfg: dict):
    """A freshly initialised model for a config dict (see :func:`load_config`)."""
    mcfg = model_config_from(cfg)
    kind = cfg["model"].get("type", "waveglow")
    return MODEL_TYPES[kind][0](mcfg)

