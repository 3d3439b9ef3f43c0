"""The source tree is clean under ``ruff check`` (settings in pyproject.toml's [tool.ruff])."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PATHS = ["vocoflow", "tests", "benchmarks", "recipes", "egs"]


def _ruff() -> str | None:
    """The ruff next to this Python (the venv's, installed by the dev extras), else on PATH."""
    here = Path(sys.executable).parent / ("ruff.exe" if os.name == "nt" else "ruff")
    return str(here) if here.is_file() else shutil.which("ruff")


def test_ruff_check_is_clean():
    ruff = _ruff()
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -e '.[dev]')")
    r = subprocess.run([ruff, "check", "--no-cache", "--output-format", "concise", *PATHS],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"ruff check {' '.join(PATHS)} found problems:\n{r.stdout}{r.stderr}"
