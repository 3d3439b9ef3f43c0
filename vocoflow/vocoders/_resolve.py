"""Conventions shared by the vocoder models (WaveGlow, WaveNet teacher, IAF student)."""

from __future__ import annotations

import dataclasses

__all__ = ["resolve_config", "config_from_dict", "MelModelMixin"]


def resolve_config(cls, config=None, overrides: dict | None = None):
    """A model's config dataclass ``cls`` from an instance, a dict, or keyword overrides (the
    shared constructor convention of WaveGlow, teachers and students)."""

    overrides = overrides or {}
    if config is None:
        return cls(**overrides)
    if isinstance(config, dict):
        return cls.from_dict({**config, **overrides})
    return dataclasses.replace(config, **overrides) if overrides else config


def config_from_dict(cls, data: dict, type_name: str, features=None):
    """Shared ``from_dict`` of the model config dataclasses: ``type`` must be ``type_name``;
    ``features`` (a :class:`~vocoflow.audio.MelConfig` or dict) supplies ``n_mels`` and
    ``hop_length`` (and must agree with them when they are given)."""
    data = dict(data)
    kind = data.pop("type", type_name)
    if kind != type_name:
        raise ValueError(f"model type {kind!r} is not {type_name!r}")
    if features is not None:
        f = features if isinstance(features, dict) else features.to_dict()
        for key in ("n_mels", "hop_length"):
            if key in f:
                if key in data and data[key] is not None and int(data[key]) != int(f[key]):
                    raise ValueError(f"model {key}={data[key]} disagrees with the features' "
                                     f"{key}={f[key]}")
                data[key] = f[key]
    known = {fl.name for fl in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s): {', '.join(unknown)}")
    return cls(**data)


class MelModelMixin:
    """Properties, weight-norm handling, mel conditioning and the inference context common to
    the mel-conditioned models; a model provides ``config`` (with ``n_mels`` and
    ``hop_length``), ``conditioners()`` and an ``upsample`` module (frames to samples)."""

    @property
    def hop_length(self) -> int:
        return self.config.hop_length

    @property
    def n_mels(self) -> int:
        return self.config.n_mels

    def n_params(self, trainable_only: bool = True) -> int:
        """Number of parameters (weight-norm ``g`` and ``v`` both count, as in WaveGlow)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def remove_weight_norm(self):
        """Fold the conditioners' weight norm into plain weights (inference)."""
        for m in self.conditioners():
            m.remove_weight_norm()
        return self

    def has_weight_norm(self) -> bool:
        return any(m.has_weight_norm() for m in self.conditioners())

    def inference_context(self):
        """``torch.inference_mode()``; a model whose inference needs autograd overrides it."""
        import torch

        return torch.inference_mode()

    def condition(self, mel):
        """Mel ``(B, n_mels, frames)`` upsampled to ``(B, n_mels, frames * hop)``."""
        if mel.dim() != 3 or mel.shape[1] != self.config.n_mels:
            raise ValueError(f"mel must be (B, {self.config.n_mels}, frames), got {tuple(mel.shape)}")
        return self.upsample(mel)
