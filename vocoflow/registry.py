"""Registries of pluggable classes: one :class:`ClassChoices` per slot (vocoder model types,
image model types).

A registered :class:`Choice` ties a type name (the ``type:`` of a config) to the class that
builds it, its config class, the name of the training task that trains it, and boolean
capabilities that callers ask for instead of testing type names. This module imports nothing
of vocoflow, so every layer may use it.

>>> slot = ClassChoices("model type", default="a", capabilities=("fast",))
>>> _ = slot.register("a", dict, task="t", fast=True)
>>> _ = slot.register("b", list)
>>> slot.get().cls is dict, slot.get("b").has("fast"), slot.names(fast=True)
(True, False, ['a'])
>>> slot.get("c")
Traceback (most recent call last):
    ...
ValueError: unknown model type 'c' (known: a, b)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

__all__ = ["Choice", "ClassChoices"]


@dataclass(frozen=True)
class Choice:
    """One registered type: ``name``, the class (or builder) ``cls``, its ``config`` class (or
    ``None``), the training ``task`` name (or ``None``) and its true ``capabilities``."""

    name: str
    cls: Callable
    config: type | None = None
    task: str | None = None
    capabilities: frozenset = frozenset()

    def has(self, capability: str) -> bool:
        return capability in self.capabilities


class ClassChoices:
    """The registered types of one slot (in registration order).

    ``capabilities`` names the capabilities a choice of this slot may declare (anything else
    is refused at registration, so a typo cannot silently read as ``False``); ``default`` is
    the type used when a config names none.
    """

    def __init__(self, slot: str, default: str | None = None, capabilities=()):
        self.slot = slot
        self.default = default
        self.capabilities = tuple(capabilities)
        self._choices: dict[str, Choice] = {}

    def register(self, name: str, cls: Callable, config: type | None = None,
                 task: str | None = None, **capabilities: bool) -> Choice:
        """Add a type; ``capabilities`` are ``NAME=bool`` keywords of the slot's capabilities."""
        if name in self._choices:
            raise ValueError(f"{self.slot} {name!r} is already registered")
        bad = sorted(set(capabilities) - set(self.capabilities))
        if bad:
            raise ValueError(f"unknown capability(ies) {', '.join(bad)} for a {self.slot} "
                             f"(known: {', '.join(self.capabilities) or 'none'})")
        choice = Choice(name, cls, config, task,
                        frozenset(k for k, v in capabilities.items() if v))
        self._choices[name] = choice
        return choice

    def get(self, name: str | None = None) -> Choice:
        """The choice ``name`` (the default when ``None``); ``ValueError`` naming the known
        types otherwise."""
        if name is None:
            name = self.default
        choice = self._choices.get(name) if isinstance(name, str) else None
        if choice is None:
            raise ValueError(f"unknown {self.slot} {name!r} (known: {self.known()})")
        return choice

    def find(self, name) -> Choice | None:
        """The choice ``name``, or ``None`` when it is not registered (or ``None``)."""
        return self._choices.get(name) if isinstance(name, str) else None

    def of(self, obj) -> Choice:
        """The choice whose class built ``obj`` (an instance of a registered class)."""
        for choice in self._choices.values():
            if isinstance(choice.cls, type) and isinstance(obj, choice.cls):
                return choice
        raise ValueError(f"{type(obj).__name__} is not a registered {self.slot} "
                         f"(known: {self.known()})")

    def names(self, task: str | None = None, **capabilities: bool) -> list[str]:
        """Type names, optionally only those of ``task`` and with (``True``) or without
        (``False``) the given capabilities."""
        bad = sorted(set(capabilities) - set(self.capabilities))
        if bad:
            raise ValueError(f"unknown capability(ies) {', '.join(bad)} for a {self.slot}")
        out = []
        for choice in self._choices.values():
            if task is not None and choice.task != task:
                continue
            if all(choice.has(k) == bool(v) for k, v in capabilities.items()):
                out.append(choice.name)
        return out

    def known(self) -> str:
        """The type names, comma-separated (for error messages)."""
        return ", ".join(self._choices)

    def __contains__(self, name) -> bool:
        return name in self._choices

    def __iter__(self) -> Iterator[str]:
        return iter(self._choices)

    def __len__(self) -> int:
        return len(self._choices)

    def __repr__(self) -> str:
        return f"ClassChoices({self.slot!r}: {self.known()})"
