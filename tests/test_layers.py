"""The package's layering: which subpackage of vocoflow may import which.

Every module under vocoflow/ is parsed with ``ast``; its ``import vocoflow.X``, ``from vocoflow.X
import ...`` and relative imports (at any depth, lazy ones inside functions included) are
resolved to a top-level part of vocoflow and checked against the allowed arrows below.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "vocoflow"

# top-level helper modules: they import nothing of vocoflow, and anyone may import them
HELPERS = {"registry", "yamlfile", "atomic"}

# subpackage -> the subpackages it may import (besides itself and the helpers)
ALLOWED = {
    "cli": {"train", "eval", "vocoders", "images", "audio", "steganography"},
    "train": {"vocoders", "images", "flows", "nets", "audio", "steganography"},
    "vocoders": {"flows", "nets", "audio"},
    "images": {"flows", "nets"},
    "steganography": {"flows", "nets"},
    "nets": set(),
    "flows": set(),
    "audio": set(),
    "eval": {"audio"},
}


def _modules():
    return sorted(p for p in ROOT.rglob("*.py") if "__pycache__" not in p.parts)


def _package_of(path: Path) -> list[str]:
    """The dotted package a module's relative imports start from, as parts (``vocoflow``, ...)."""
    rel = path.relative_to(ROOT.parent).with_suffix("")
    return list(rel.parts[:-1])


def vocoflow_imports(path: Path, source: str | None = None) -> set[tuple[str, int]]:
    """``(top-level part of vocoflow, line)`` for every import of vocoflow in the module at
    ``path`` (its text, or ``source``); the part is '' for the bare ``vocoflow`` package."""
    tree = ast.parse(path.read_text() if source is None else source, filename=str(path))
    found = set()
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package_of(path)
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                mod = ".".join(base + ([node.module] if node.module else []))
                # `from . import x` / `from .. import x`: x may be a module of that package
                targets = [mod] if node.module else [f"{mod}.{alias.name}" for alias in node.names]
            else:
                mod = node.module or ""
                if mod == "vocoflow":
                    targets = [f"vocoflow.{alias.name}" for alias in node.names]
                else:
                    targets = [mod]
        for name in targets:
            parts = name.split(".")
            if parts[0] != "vocoflow":
                continue
            part = parts[1] if len(parts) > 1 else ""
            if part.endswith(".py"):
                part = part[:-3]
            found.add((part, node.lineno))
    return found


def _part_of(path: Path) -> str:
    rel = path.relative_to(ROOT)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def test_every_part_is_known():
    parts = {_part_of(p) for p in _modules()} - {"__init__"}
    assert parts <= set(ALLOWED) | HELPERS, sorted(parts - set(ALLOWED) - HELPERS)
    assert set(ALLOWED) | HELPERS <= parts


def test_the_parser_sees_every_kind_of_import():
    source = "\n".join([
        "import torch",                           # 1: not vocoflow
        "import vocoflow.audio.mel",              # 2
        "from vocoflow import flows, registry",   # 3
        "from .config import x",                  # 4: vocoflow.vocoders.config
        "from .. import nets",                    # 5
        "from . import base",                     # 6
        "import vocoflow",                        # 7
        "def f():",
        "    from vocoflow.train.trainer import Trainer",  # 9: a lazy import
    ])
    found = vocoflow_imports(ROOT / "vocoders" / "example.py", source)
    assert found == {("audio", 2), ("flows", 3), ("registry", 3), ("vocoders", 4), ("nets", 5),
                     ("vocoders", 6), ("", 7), ("train", 9)}
    assert {part for part, _ in vocoflow_imports(ROOT / "audio" / "stats.py")} >= {"audio"}


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT.parent)))
def test_layering(path):
    me = _part_of(path)
    if me == "__init__":  # vocoflow/__init__.py may import anything
        return
    allowed = set() if me in HELPERS else ALLOWED[me] | HELPERS | {me}
    bad = sorted((line, part or "vocoflow") for part, line in vocoflow_imports(path)
                 if part not in allowed)
    assert not bad, (f"{path.relative_to(ROOT.parent)} ({me}) may import only "
                     f"{sorted(allowed) or 'nothing of vocoflow'}, but imports: "
                     + ", ".join(f"{p} (line {ln})" for ln, p in bad))
