"""What the mel-conditioned vocoder models (WaveGlow, WaveNet teacher, IAF student) share: the
:class:`MelModelConfig` base of their config dataclasses, the constructor convention
(:func:`resolve_config`) and :class:`MelModelMixin`.

>>> @dataclasses.dataclass
... class ToyConfig(MelModelConfig, type_name="toy"):
...     width: int = 4
>>> ToyConfig.from_dict({"type": "toy", "width": 2}, features={"n_mels": 8, "hop_length": 16})
ToyConfig(n_mels=8, hop_length=16, width=2)
>>> ToyConfig().to_dict()
{'n_mels': 80, 'hop_length': 256, 'width': 4}
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

__all__ = ["MelModelConfig", "resolve_config", "config_from_dict", "check_int_fields",
           "MelModelMixin"]


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
    known = {fl.name for fl in dataclasses.fields(cls)}
    if features is not None:
        f = features if isinstance(features, dict) else features.to_dict()
        # sample_rate only for configs that have the field (models with an excitation)
        for key in ("n_mels", "hop_length", "sample_rate"):
            if key in f and (key != "sample_rate" or key in known):
                if key != "sample_rate" and key in data and data[key] is not None and int(data[key]) != int(f[key]):
                    raise ValueError(f"model {key}={data[key]} disagrees with the features' "
                                     f"{key}={f[key]}")
                data[key] = f[key]
    if ("source_features" in known and data.get("source") == "mel"
            and data.get("source_features") is None and features is not None):
        # a model whose mean is the mel source keeps the whole front end
        data["source_features"] = features if isinstance(features, dict) else features.to_dict()
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s): {', '.join(unknown)}")
    return cls(**data)


@dataclasses.dataclass
class MelModelConfig:
    """Base of the model config dataclasses: the fields every mel model has (``n_mels`` and
    ``hop_length``, which must match the feature front end) and the shared ``to_dict`` /
    ``from_dict``. A subclass names its model type with ``class C(MelModelConfig,
    type_name="...")``; its own fields follow ``n_mels`` and ``hop_length``."""

    type_name: ClassVar[str] = ""

    n_mels: int = 80
    hop_length: int = 256

    def __init_subclass__(cls, type_name: str | None = None, **kwargs):
        super().__init_subclass__(**kwargs)
        if type_name is not None:
            cls.type_name = type_name

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict, features=None):
        """Build from a dict (``type`` allowed when it is this model's). ``features`` (a
        :class:`~vocoflow.audio.MelConfig` or dict) supplies ``n_mels``/``hop_length`` when
        absent and must agree with them when present; unknown fields raise ``ValueError``."""
        return config_from_dict(cls, data, cls.type_name, features)


def check_int_fields(cfg, names, minimum: int = 1) -> None:
    """Each field of ``names`` of the config ``cfg`` must be an integer (not a bool or None)
    >= ``minimum`` (1: positive, 0: non-negative); it is stored as ``int``."""
    kind = "positive" if minimum == 1 else "non-negative" if minimum == 0 else f">= {minimum}"
    for name in names:
        v = getattr(cfg, name)
        if isinstance(v, bool) or v is None or int(v) != v or int(v) < minimum:
            raise ValueError(f"{type(cfg).__name__}.{name} must be a {kind} integer, got {v!r}")
        setattr(cfg, name, int(v))


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
