"""The saved vocoder directory: writing it, reading it back and checking it.

A vocoder directory holds::

    config.yaml   format: vocoflow-vocoder, version: 1, features (a full MelConfig),
                  model (type + fields), synthesis (sigma, denoise), normalize (bool),
                  train (the training settings), training (run info: step, loss, ...)
    model.pt      the model's state_dict only (read with torch.load(weights_only=True)), or
    model.safetensors  the same tensors in safetensors format (``save_vocoder(...,
                  safetensors=True)``, ``Vocoder.save_pretrained``); read first when present
    stats.npz     per-bin feature mean/scale (optional; required when normalize is true)

``normalize: true`` means the model was trained on ``(log_mel - mean) / scale``. The model
type is any of :data:`~vocoflow.vocoders.VOCODER_MODELS`. :func:`read_vocoder_dir` returns
the checked parts, from which :class:`~vocoflow.vocoders.Vocoder` is built.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml

from vocoflow.atomic import atomic_dir
from vocoflow.audio import MelConfig, Stats
from vocoflow.yamlfile import YAMLFileError, read_yaml_file

from .config import DEFAULT_SYNTHESIS, features_from_config, model_config_from, model_type
from .models import VOCODER_MODELS

__all__ = ["FORMAT", "VERSION", "VocoderError", "save_vocoder", "read_vocoder_dir", "SavedVocoder",
           "stats_arrays", "config_flag"]

FORMAT = "vocoflow-vocoder"
VERSION = 1
WEIGHTS_SAFETENSORS = "model.safetensors"


class VocoderError(ValueError):
    """A foreign or corrupt vocoder directory, or an input the vocoder cannot use."""


# ----------------------------------------------------------------------------------- saving
def _state_dict(model) -> dict:
    sd = model.state_dict()
    out = {}
    for k, v in sd.items():
        for prefix in ("module.", "_orig_mod."):
            while k.startswith(prefix):
                k = k[len(prefix):]
        out[k] = v.detach().cpu().clone()
    return out


def stats_arrays(stats):
    """``(mean, scale)`` float64 arrays of feature statistics given as a :class:`Stats`, a
    ``{"mean", "scale"}`` mapping, a ``(mean, scale)`` pair or a stats ``.npz`` path (read with
    :meth:`Stats.load`); ``None`` for ``None``."""
    if stats is None:
        return None
    if isinstance(stats, (str, os.PathLike)):
        try:
            stats = Stats.load(stats)
        except ValueError as e:  # StatsError: names the file and what is wrong
            raise VocoderError(str(e)) from None
    if isinstance(stats, dict):
        mean, scale = stats["mean"], stats["scale"]
    elif isinstance(stats, (tuple, list)):
        mean, scale = stats[0], stats[1]
    else:
        mean, scale = stats.mean, stats.scale
    try:  # the checks of Stats: vectors of one size, finite, every scale > 0
        checked = Stats(mean, scale, 0)
    except ValueError as e:
        raise VocoderError(str(e)) from None
    return checked.mean, checked.scale


def config_flag(doc: dict, key: str, default: bool, where) -> bool:
    """``doc[key]`` as a bool: only a real YAML boolean (``true``/``false``) is accepted, so
    that the string ``"false"`` is not read as true; anything else raises
    :class:`VocoderError` naming ``where`` and the key."""
    value = doc.get(key, default)
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise VocoderError(f"{where}: {key} must be true or false (a YAML boolean, unquoted), got {value!r}")


def save_vocoder(model, config: dict, out_dir, stats=None, normalize: bool | None = None,
                 info: dict | None = None, safetensors: bool = False) -> Path:
    """Write a vocoder directory atomically and return its path.

    Args:
        model: the trained model (DDP/compile wrappers' key prefixes are stripped). Its own
            config is what is saved under ``model:``.
        config: the model config dict (:func:`~vocoflow.vocoders.load_model_config`):
            ``features``, ``model``, ``train``, ``synthesis``; ``normalize`` may be given here too.
        stats: feature statistics (``Stats``, ``{"mean", "scale"}``, ``(mean, scale)`` or an
            ``.npz`` path) or ``None``.
        normalize: whether the model was trained on normalised features (default:
            ``config["normalize"]`` if present, else whether ``stats`` were given).
        info: run information saved under ``training:`` (step, loss, ...).
        safetensors: write the weights as ``model.safetensors`` instead of ``model.pt``.

    The files are written into a temporary directory next to ``out_dir`` that is then renamed
    to it; an existing vocoder directory there is replaced (other existing non-empty
    directories are refused).
    """
    out_dir = Path(out_dir)
    arrays = stats_arrays(stats)
    if normalize is None:
        normalize = config_flag(config, "normalize", arrays is not None, "the model config")
    if normalize and arrays is None:
        raise VocoderError(f"{out_dir}: normalize=True needs feature statistics (stats=...)")
    features = features_from_config(config)
    if arrays is not None and arrays[0].shape != (features.n_mels,):
        raise VocoderError(f"stats have {arrays[0].shape} bins, features have n_mels={features.n_mels}")
    mcfg = getattr(model, "config", None) or model_config_from(config)
    model_dict = {"type": model_type(config), **mcfg.to_dict()}
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "features": features.to_dict(),
        "model": model_dict,
        "synthesis": {**DEFAULT_SYNTHESIS, **(config.get("synthesis") or {})},
        "normalize": bool(normalize),
        "train": dict(config.get("train") or {}),
        "training": dict(info or {}),
    }
    if out_dir.exists():
        if not out_dir.is_dir():
            raise VocoderError(f"{out_dir}: exists and is not a directory")
        if any(out_dir.iterdir()) and not (out_dir / "config.yaml").is_file():
            raise VocoderError(f"{out_dir}: exists, is not empty and is not a vocoder directory; "
                               f"refusing to replace it")
    parent = out_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    # the whole directory is swapped in at once
    with atomic_dir(out_dir) as tmp:
        with open(tmp / "config.yaml", "w", encoding="utf-8") as f:
            f.write("# vocoflow vocoder (load with vocoflow.load(DIR))\n")
            yaml.safe_dump(_plain(doc), f, sort_keys=False, default_flow_style=False)
        if safetensors:
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in _state_dict(model).items()},
                      str(tmp / WEIGHTS_SAFETENSORS), metadata={"format": "pt"})
        else:
            torch.save(_state_dict(model), tmp / "model.pt")
        if arrays is not None:
            np.savez(tmp / "stats.npz", mean=arrays[0], scale=arrays[1])
    return out_dir


def _plain(x):
    """numpy scalars and tuples to plain YAML-safe Python values."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    return x


# ----------------------------------------------------------------------------------- reading
def read_config(directory: Path) -> dict:
    """The checked ``config.yaml`` document of a vocoder directory."""
    if not directory.is_dir():
        raise VocoderError(f"{directory}: no such vocoder directory")
    path = directory / "config.yaml"
    if not path.is_file():
        raise VocoderError(f"{directory}: not a vocoflow vocoder directory (no config.yaml)")
    try:
        doc = read_yaml_file(path)
    except YAMLFileError as e:
        raise VocoderError(f"{path}: unreadable config ({str(e).removeprefix(f'{path}: ')})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise VocoderError(f"{path}: not a vocoflow vocoder config (format is {got!r}, "
                           f"expected {FORMAT!r})")
    version = doc.get("version")
    if not isinstance(version, int) or version > VERSION or version < 1:
        raise VocoderError(f"{path}: unsupported vocoder format version {version!r} "
                           f"(this vocoflow reads version {VERSION})")
    for key in ("features", "model"):
        if not isinstance(doc.get(key), dict):
            raise VocoderError(f"{path}: missing or malformed '{key}:' section")
    return doc


def weights_file(directory: Path) -> Path:
    """The weights of a vocoder directory: ``model.safetensors`` if present, else ``model.pt``."""
    safe = Path(directory) / WEIGHTS_SAFETENSORS
    return safe if safe.is_file() else Path(directory) / "model.pt"


def _load_weights(directory: Path, model) -> None:
    """Load ``model.safetensors`` / ``model.pt`` into ``model`` after checking it matches the
    model exactly."""
    weights = weights_file(directory)
    if not weights.is_file():
        raise VocoderError(f"{directory}: missing model.pt (or {WEIGHTS_SAFETENSORS})")
    try:
        if weights.name == WEIGHTS_SAFETENSORS:
            from safetensors.torch import load_file

            sd = load_file(str(weights), device="cpu")
        else:
            sd = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip, safetensors and weights_only errors have many types
        raise VocoderError(f"{weights}: unreadable weights ({type(e).__name__}: "
                           f"{str(e).splitlines()[0] if str(e) else ''})") from None
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise VocoderError(f"{weights}: not a state_dict of tensors")
    if not any(".parametrizations." in k for k in sd) and hasattr(model, "remove_weight_norm"):
        model.remove_weight_norm()  # saved after weight norm was folded
    own = model.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    shapes = sorted(k for k in set(own) & set(sd) if own[k].shape != sd[k].shape)
    if missing or unexpected or shapes:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected),
                            ("wrong shape", shapes)):
            if keys:
                more = f" (+{len(keys) - 3} more)" if len(keys) > 3 else ""
                parts.append(f"{label}: {', '.join(keys[:3])}{more}")
        raise VocoderError(f"{weights}: weights do not match the model in config.yaml "
                           f"({'; '.join(parts)})")
    model.load_state_dict(sd)


def _load_stats(directory: Path, features: MelConfig, normalize: bool):
    spath = directory / "stats.npz"
    if not spath.is_file():
        if normalize:
            raise VocoderError(f"{directory}: config says normalize: true but stats.npz is missing")
        return None
    try:
        stats = stats_arrays(spath)
    except (OSError, ValueError, KeyError) as e:
        raise VocoderError(f"{spath}: unreadable statistics ({e})") from None
    if stats[0].shape != (features.n_mels,) or stats[1].shape != (features.n_mels,):
        raise VocoderError(f"{spath}: statistics have shape {stats[0].shape}, expected "
                           f"({features.n_mels},)")
    return stats


@dataclass
class SavedVocoder:
    """The checked contents of a vocoder directory (see :func:`read_vocoder_dir`)."""

    directory: Path
    config: dict            # the whole config.yaml document
    features: MelConfig
    model: torch.nn.Module  # built from config.yaml, with the saved weights loaded
    stats: tuple | None     # (mean, scale) float64 arrays
    normalize: bool


def read_vocoder_dir(directory) -> SavedVocoder:
    """Read and check a vocoder directory; :class:`VocoderError` says what is wrong with it."""
    directory = Path(directory)
    doc = read_config(directory)
    cfgpath = directory / "config.yaml"
    try:
        features = MelConfig.from_dict(doc["features"])
        mcfg = model_config_from(doc)
    except (TypeError, ValueError) as e:
        raise VocoderError(f"{cfgpath}: bad features/model section ({e})") from None
    model = VOCODER_MODELS.get(model_type(doc)).cls(mcfg)
    _load_weights(directory, model)
    normalize = config_flag(doc, "normalize", False, cfgpath)
    stats = _load_stats(directory, features, normalize)
    return SavedVocoder(directory, doc, features, model, stats, normalize)
