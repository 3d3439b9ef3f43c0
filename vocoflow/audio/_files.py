"""Atomic file writes: write a temporary file in the target's directory, then ``os.replace``.

A reader never sees a half-written file under the final name: after a crash the target is
either the old complete file or absent, and only a ``.tmp.*`` file is left behind.

- :class:`AtomicFile`: an open temporary file that :meth:`~AtomicFile.commit` renames over
  the target (for files written over a longer time, e.g. an ark);
- :func:`atomic_open`: the same as a context manager (commit on success, remove on error);
  anything that writes to a binary file object (``np.savez``, ``torch.save``,
  ``fig.savefig(f, format="png")``, ``soundfile.write``) writes atomically through it;
- :func:`atomic_write_text`, :func:`atomic_copy`: one-call forms.

>>> import tempfile
>>> with tempfile.TemporaryDirectory() as d:
...     atomic_write_text(os.path.join(d, "a.txt"), "hello\\n")
...     atomic_copy(os.path.join(d, "a.txt"), os.path.join(d, "b.txt"))
...     sorted(os.listdir(d)), open(os.path.join(d, "b.txt")).read()
(['a.txt', 'b.txt'], 'hello\\n')
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile

__all__ = [
    "AtomicFile",
    "atomic_open",
    "atomic_write_text",
    "atomic_copy",
    "tmp_path_for",
    "chmod_like_umask",
]


def tmp_path_for(path: str | os.PathLike) -> str:
    """A fresh temporary file name next to ``path`` (the file is created, empty)."""
    path = os.fspath(path)
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.tmp.", dir=directory)
    os.close(fd)
    return tmp


def chmod_like_umask(path: str) -> None:
    # mkstemp creates 0600 files; give the result the permissions a plain open() would
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


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
        self.file.close()
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
