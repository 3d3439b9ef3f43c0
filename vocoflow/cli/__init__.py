"""Command-line interface (``vocoflow ...``)."""

from .main import CLIError, main

__all__ = ["main", "CLIError"]
