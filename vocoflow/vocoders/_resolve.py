"""The shared constructor convention of vocoder models."""

from __future__ import annotations

__all__ = ["resolve_config"]


def resolve_config(cls, config=None, overrides: dict | None = None):
    """A model's config dataclass ``cls`` from an instance, a dict, or keyword overrides (the
    shared constructor convention of WaveGlow, teachers and students)."""
    import dataclasses

    overrides = overrides or {}
    if config is None:
        return cls(**overrides)
    if isinstance(config, dict):
        return cls.from_dict({**config, **overrides})
    return dataclasses.replace(config, **overrides) if overrides else config
