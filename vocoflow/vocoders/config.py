"""Model YAML configs (``configs/*.yaml``): reading and checking them, building their parts.

A config has exactly these top-level keys (shared with the trainer)::

    features:   a MelConfig mapping, or {preset: NAME, **overrides}
    model:      {type: NAME, **fields of its config}   (a type of VOCODER_MODELS, default waveglow;
                n_mels/hop_length come from features)
    train:      trainer settings (batch_size, segment_length, lr, steps, sigma, ...)
    synthesis:  {sigma: 0.6, denoise: 0.0}

>>> cfg = load_model_config({"features": {"preset": "asterisk16k"}, "model": {"type": "waveglow",
...                    "n_flows": 2, "n_early_every": 1, "wn_layers": 2, "wn_channels": 8}})
>>> features_from_config(cfg).sample_rate, cfg["synthesis"]["sigma"]
(16000, 0.6)
>>> build_model(cfg).config.hop_length
256
"""

from __future__ import annotations

import os

from vocoflow.audio import MelConfig
from vocoflow.yamlfile import read_yaml_file

from .models import VOCODER_MODELS

__all__ = ["load_model_config", "load_config", "features_from_config", "model_config_from",
           "build_model", "model_type", "check_config_layout", "TOP_LEVEL_KEYS", "DEFAULT_SYNTHESIS"]

TOP_LEVEL_KEYS = ("features", "model", "train", "synthesis")
DEFAULT_SYNTHESIS = {"sigma": 0.6, "denoise": 0.0}


def load_model_config(source) -> dict:
    """Read a model config (a YAML path or an already-loaded dict) and check its layout.

    Returns a new dict with ``features``, ``model``, ``train`` and ``synthesis`` (the last two
    default to ``{}`` and :data:`DEFAULT_SYNTHESIS`). Unknown top-level keys raise ``ValueError``.
    """
    name = "<config>"
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        data = read_yaml_file(name)
    else:
        data = source
    check_config_layout(data, name)
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


def check_config_layout(data, name: str = "<config>", required=("features", "model")) -> None:
    """Check a config document's layout: a mapping of :data:`TOP_LEVEL_KEYS` only, each section
    a mapping (``required`` ones present), ``synthesis`` holding only ``sigma``/``denoise``
    numbers. Raises ``ValueError`` naming ``name`` and the key."""
    if not isinstance(data, dict):
        raise ValueError(f"{name}: a model config must be a mapping, got {type(data).__name__}")
    unknown = sorted(str(k) for k in set(data) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise ValueError(f"{name}: unknown top-level key(s) {', '.join(unknown)} "
                         f"(expected {', '.join(TOP_LEVEL_KEYS)})")
    for key in TOP_LEVEL_KEYS:
        value = data.get(key)
        if key in required and not isinstance(value, dict):
            raise ValueError(f"{name}: '{key}:' must be a mapping")
        if value is not None and not isinstance(value, dict):
            raise ValueError(f"{name}: '{key}:' must be a mapping, got {type(value).__name__} {value!r}")
    for k, v in (data.get("synthesis") or {}).items():
        if k not in DEFAULT_SYNTHESIS:
            raise ValueError(f"{name}: synthesis.{k}: unknown key (expected "
                             f"{', '.join(DEFAULT_SYNTHESIS)})")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
            raise ValueError(f"{name}: synthesis.{k}: expected a number >= 0, got {v!r}")


def features_from_config(cfg: dict) -> MelConfig:
    """The :class:`MelConfig` of a config's ``features:`` section."""
    feats = cfg["features"]
    return feats if isinstance(feats, MelConfig) else MelConfig.from_dict(feats)


load_config = load_model_config  # the older name


def model_type(cfg: dict) -> str:
    """The ``model.type`` of a config (the registry's default when absent)."""
    return (cfg.get("model") or {}).get("type", VOCODER_MODELS.default)


def model_config_from(cfg: dict):
    """The model's config dataclass (e.g. :class:`WaveGlowConfig`), with ``n_mels`` and
    ``hop_length`` taken from the features."""
    choice = VOCODER_MODELS.get(model_type(cfg))
    return choice.config.from_dict(dict(cfg["model"]), features=features_from_config(cfg))


def build_model(cfg: dict):
    """A freshly initialised model for a config dict (see :func:`load_model_config`)."""
    mcfg = model_config_from(cfg)
    return VOCODER_MODELS.get(model_type(cfg)).cls(mcfg)

