"""Training options (the ``train:`` section of a YAML config)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields

__all__ = ["TrainConfig"]


def _check_type(name: str, kind: str, v):
    """``v`` as field ``train.<name>`` of annotation ``kind`` wants it, or a ValueError naming
    the key."""
    optional = kind.endswith("| None")
    base = kind.split("|")[0].strip()
    if v is None and optional:
        return v
    is_num = isinstance(v, (int, float)) and not isinstance(v, bool)
    if base == "int" and isinstance(v, int) and not isinstance(v, bool):
        return v
    if base == "float" and is_num:
        return float(v)
    if base == "str" and isinstance(v, str):
        return v
    if base == "tuple" and isinstance(v, (list, tuple)) and len(v) == 2 and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
        return tuple(float(x) for x in v)
    if base == "dict" and isinstance(v, dict):
        return v
    want = {"int": "an integer", "float": "a number", "str": "a string",
            "tuple": "a pair of numbers", "dict": "a mapping"}.get(base, base)
    raise ValueError(f"train.{name}: expected {want}{' or null' if optional else ''}, got {v!r}")


@dataclass
class TrainConfig:
    """Options of :class:`~vocoflow.train.trainer.Trainer`.

    ``batch_size`` is the *global* batch: with several processes each gets an equal share
    (it must divide evenly), so results do not depend on the process count.
    """

    steps: int = 1000
    batch_size: int = 8
    lr: float = 1e-4
    weight_decay: float = 0.0
    betas: tuple = (0.9, 0.999)
    lr_schedule: str = "constant"        # constant | cosine | exponential | step
    lr_warmup_steps: int = 0
    lr_decay: float = 0.5                # exponential: factor per lr_decay_steps; step: factor
    lr_decay_steps: int = 10000
    lr_min_ratio: float = 0.0            # cosine floor, as a fraction of lr
    grad_clip: float | None = 10.0
    grad_accum: int = 1
    mixed_precision: str = "no"          # no | bf16 | fp16
    ema_decay: float | None = None
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    validate_every: int = 500
    log_every: int = 25
    media_every: int | None = None       # audio/image samples to TensorBoard (default: validate_every)
    seed: int = 1234
    num_workers: int = 0
    nan_policy: str = "stop"             # stop | skip (skip at most max_bad_steps non-finite steps)
    max_bad_steps: int = 10
    extra: dict = field(default_factory=dict)  # task-specific keys (sigma, segment_length, ...)

    @classmethod
    def from_dict(cls, d: dict | None) -> "TrainConfig":
        if d is not None and not isinstance(d, dict):
            raise ValueError(f"train: must be a mapping, got {type(d).__name__} {d!r}")
        d = dict(d or {})
        known = {f.name for f in fields(cls)}
        extra = {k: d.pop(k) for k in list(d) if k not in known}
        # YAML 1.1 reads "5e-4" as a string: coerce the numeric options
        for f in fields(cls):
            v = d.get(f.name)
            if isinstance(v, str) and f.type in ("int", "float", "float | None", "int | None"):
                try:
                    d[f.name] = (int if f.type.startswith("int") else float)(v)
                except ValueError:
                    raise ValueError(f"train.{f.name}: {v!r} is not a number") from None
        for f in fields(cls):
            if f.name in d:
                d[f.name] = _check_type(f.name, f.type, d[f.name])
        cfg = cls(**d)
        cfg.extra.update(extra)
        if isinstance(cfg.betas, list):
            cfg.betas = tuple(cfg.betas)
        cfg.validate()
        return cfg

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        extra = d.pop("extra")
        d.update(extra)
        return d

    def validate(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.grad_accum < 1:
            raise ValueError("train: steps, batch_size and grad_accum must be >= 1")
        if self.lr_schedule not in ("constant", "cosine", "exponential", "step"):
            raise ValueError(f"train.lr_schedule: unknown schedule {self.lr_schedule!r}")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise ValueError(f"train.mixed_precision must be no, bf16 or fp16, "
                             f"not {self.mixed_precision!r}")
        if self.nan_policy not in ("stop", "skip"):
            raise ValueError(f"train.nan_policy must be stop or skip, not {self.nan_policy!r}")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ValueError("train.ema_decay must be in (0, 1)")
