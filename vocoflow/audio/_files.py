"""Atomic file writes: write a temporary file in the target's directory, then ``os.replace``.

A reader never sees a half-written file under the final name: after a crash the target is
either the old complete file or absent, and only a ``.tmp.*`` file is left behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile

__all__ = ["atomic_open", "atomic_write_text", "tmp_path_for", "chmod_like_umask"]


def tmp_path_for(path: str | os.PathLike) -> str:
    """A fresh temporary file name next to ``path`` (the file is created, empty)."""
    path = os.fspath(path)
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.tmp.", dir=directory)
    os.close(fd)
    return tmp


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8"):
    """Open a temporary file for writing; on success it replaces ``path``, on error it is removed."""
    if "r" in mode or "a" in mode or "+" in mode:
        raise ValueError("atomic_open is for writing only ('w' or 'wb')")
    tmp = tmp_path_for(path)
    try:
        with open(tmp, mode, encoding=None if "b" in mode else encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        chmod_like_umask(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def chmod_like_umask(path: str) -> None:
    # mkstemp creates 0600 files; give the result the permissions a plain open() would
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)
