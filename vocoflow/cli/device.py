"""``--device`` of the commands that take one: checked before anything is loaded."""

from __future__ import annotations

from .main import CLIError

__all__ = ["check_device"]


def check_device(name: str, option: str = "--device") -> str:
    """``name`` if torch can run on that device here, else a one-line :class:`CLIError`
    (a CUDA device without a usable GPU, an index past the last GPU, an unknown device type).

    >>> check_device("cpu")
    'cpu'
    """
    import torch

    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError, TypeError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CLIError(f"{option} {name}: not a torch device ({first})") from None
    if dev.type == "cpu":
        return name
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise CLIError(f"{option} {name}: no CUDA GPU is available here (torch.cuda.is_available() "
                           f"is False; torch {torch.__version__}, CUDA build {torch.version.cuda}); "
                           f"use {option} cpu")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise CLIError(f"{option} {name}: there are {count} CUDA device(s) (cuda:0..cuda:{count - 1})")
        return name
    backend = getattr(torch, dev.type, None) if dev.type != "mps" else getattr(torch.backends, "mps", None)
    available = getattr(backend, "is_available", None)
    if available is None or not available():
        raise CLIError(f"{option} {name}: no {dev.type} device is available here; use {option} cpu")
    return name
