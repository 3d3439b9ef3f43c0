"""Atomic writes: a file or a whole directory is written under a temporary name in the target's
directory, then renamed into place with ``os.replace``.

A reader never sees a half-written file under the final name: after a crash the target is
either the old complete file or absent, and only a ``.tmp.*`` file is left behind. This module
imports nothing of vocoflow, so every layer may use it (it is the only place that calls
``os.replace``).

- :class:`AtomicFile`: an open temporary file that :meth:`~AtomicFile.commit` renames over
  the target (for files written over a longer time, e.g. an ark);
- :func:`atomic_open`: the same as a context manager (commit on success, remove on error);
  anything that writes to a binary file object (``np.savez``, ``torch.save``,
  ``fig.savefig(f, format="png")``, ``soundfile.write``) writes atomically through it;
- :func:`atomic_write_text`, :func:`atomic_write_bytes`, :func:`atomic_copy`: one-call forms;
- :func:`move_file`: rename a complete file (e.g. one written into a staging directory) to its
  final name, replacing what is there;
- :func:`replace_dir`: swap a fully written directory in for another (the old one is moved
  aside first and removed last); :func:`atomic_dir`: a temporary directory, as a context
  manager, that is swapped in on success and removed on error.

>>> import tempfile
>>> with tempfile.TemporaryDirectory() as d:
...     atomic_write_text(os.path.join(d, "a.txt"), "hello\\n")
...     atomic_copy(os.path.join(d, "a.txt"), os.path.join(d, "b.txt"))
...     sorted(os.listdir(d)), open(os.path.join(d, "b.txt")).read()
(['a.txt', 'b.txt'], 'hello\\n')
>>> with tempfile.TemporaryDirectory() as d:
...     target = os.path.join(d, "model")
...     for text in ("old", "new"):
...         with atomic_dir(target) as tmp:
...             atomic_write_text(tmp / "x.txt", text)
...     sorted(os.listdir(d)), open(os.path.join(target, "x.txt")).read()
(['model'], 'new')
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

__all__ = [
    "AtomicFile",
    "atomic_open",
    "atomic_write_text",
    "atomic_write_bytes",
    "atomic_copy",
    "tmp_path_for",
    "tmp_dir_for",
    "chmod_like_umask",
    "move_file",
    "replace_dir",
    "atomic_dir",
]


def tmp_path_for(path: str | os.PathLike) -> str:
    """A fresh temporary file name next to ``path`` (the file is created, empty)."""
    path = os.fspath(path)
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.tmp.", dir=directory)
    os.close(fd)
    return tmp


def tmp_dir_for(path: str | os.PathLike) -> str:
    """A fresh temporary directory next to ``path`` (created, empty)."""
    path = os.fspath(path)
    return tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.tmp.", dir=os.path.dirname(path) or ".")


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def chmod_like_umask(path: str | os.PathLike) -> None:
    """Give ``path`` the permissions a plain ``open()`` (a file) or ``mkdir`` (a directory) would.

    ``mkstemp`` creates 0600 files and ``mkdtemp`` 0700 directories.
    """
    os.chmod(path, (0o777 if os.path.isdir(path) else 0o666) & ~_umask())


class AtomicFile:
    """A temporary file next to ``path``, open for writing as :attr:`file`.

    :meth:`commit` flushes it to disk and renames it to ``path``; :meth:`abort` (also called
    when a commit fails) closes and removes it. Nothing appears under ``path`` before a commit.
    """

    def __init__(self, path: str | os.PathLike, mode: str = "wb", encoding: str | None = "utf-8"):
        if "r" in mode or "a" in mode or "+" in mode:
            raise ValueError("atomic writes are for writing only ('w' or 'wb')")
        self.path = os.fspath(path)
        self.tmp = tmp_path_for(self.path)
        try:
            self.file = open(self.tmp, mode, encoding=None if "b" in mode else encoding)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.tmp)
            raise

    def commit(self) -> None:
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            chmod_like_umask(self.tmp)
            os.replace(self.tmp, self.path)
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Close and remove the temporary file. Closing flushes what is still buffered, which
        fails again on a full disk; the file is closed and removed all the same."""
        try:
            self.file.close()
        except OSError:
            pass
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.tmp)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8"):
    """Open a temporary file for writing; on success it replaces ``path``, on error it is removed."""
    af = AtomicFile(path, mode, encoding)
    try:
        yield af.file
    except BaseException:
        af.abort()
        raise
    af.commit()


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_open(path, "w") as f:
        f.write(text)


def atomic_copy(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Copy the contents of ``src`` to ``dst`` atomically (permissions as a new file's)."""
    with open(src, "rb") as fin, atomic_open(dst, "wb") as fout:
        shutil.copyfileobj(fin, fout)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as f:
        f.write(data)


def move_file(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Rename the complete file ``src`` to ``dst`` (one ``os.replace``: a reader sees the old or
    the new file), creating ``dst``'s directory. Both must be on one file system."""
    parent = os.path.dirname(os.fspath(dst))
    if parent:
        os.makedirs(parent, exist_ok=True)
    os.replace(src, dst)


def replace_dir(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Rename the complete directory ``src`` to ``dst``, replacing a directory already there.

    ``os.replace`` cannot rename over a non-empty directory, so an existing ``dst`` is first
    moved aside (into a ``.old.*`` directory next to it, which readers that look for ``dst``'s
    name do not see), ``src`` takes its name, and the old copy is removed last. If the rename
    of ``src`` fails, the old ``dst`` is put back. ``src`` and ``dst`` must be on one file system
    (e.g. ``src`` from :func:`tmp_dir_for`).
    """
    src, dst = os.fspath(src), os.fspath(dst)
    old = None
    if os.path.lexists(dst):
        old = tempfile.mkdtemp(prefix=f".{os.path.basename(dst)}.old.", dir=os.path.dirname(dst) or ".")
        os.replace(dst, os.path.join(old, "dir"))
    try:
        os.replace(src, dst)
    except BaseException:
        if old is not None:
            os.replace(os.path.join(old, "dir"), dst)
            shutil.rmtree(old, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike):
    """Yield a temporary directory (a :class:`~pathlib.Path`) next to ``path``; on success it gets
    the permissions of a new directory and replaces ``path`` (:func:`replace_dir`), on error it is
    removed. The parent of ``path`` must exist."""
    tmp = Path(tmp_dir_for(path))
    try:
        yield tmp
        chmod_like_umask(tmp)
        replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
