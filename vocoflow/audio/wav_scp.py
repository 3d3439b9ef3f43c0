"""Reading the audio a Kaldi ``wav.scp`` value names.

A value is one of (Kaldi's conventions, see :mod:`vocoflow.audio.datadir`):

- ``'file'``: a path of any file soundfile reads;
- ``'ark'``: an ark entry ``path:offset`` (a WAV stored in a Kaldi ark, as a dump's
  ``wav.scp`` holds);
- ``'pipe'``: a command ending in ``|``, run with the shell, whose stdout is an audio file.

:func:`load_wav_entry` is the one reader of such a value (data directories, dump datasets,
evaluation, decoding); :func:`wav_entry_duration` measures one without decoding it where it
can. Problems are :class:`~vocoflow.audio.io.AudioError` whose message starts with the
value (or the label given) and says what is wrong.
"""

from __future__ import annotations

import io as _io
import os
import re

import kaldiio
import numpy as np
import soundfile as sf

from .io import AudioError, check_truncated, cut_segment, load_audio, prepare_audio, run_pipe
from .kaldi_io import resolve_entry

__all__ = ["source_kind", "ark_path", "load_wav_entry", "wav_entry_duration"]

_ARK_ENTRY = re.compile(r"^(.+):(\d+)(\[[0-9:,]*\])?$")


def source_kind(value: str) -> str:
    """``'pipe'``, ``'ark'`` (``path:offset``) or ``'file'`` for a ``wav.scp`` value.

    >>> source_kind("sox a.flac -t wav - |"), source_kind("dump/wav.ark:42"), source_kind("a.wav")
    ('pipe', 'ark', 'file')
    """
    v = value.strip()
    if v.endswith("|") or v.startswith("|"):
        return "pipe"
    m = _ARK_ENTRY.match(v)
    if m and not os.path.exists(v):
        return "ark"
    return "file"


def ark_path(value: str) -> str:
    """The archive file of an ark entry (``a.ark:12`` -> ``a.ark``)."""
    m = _ARK_ENTRY.match(value.strip())
    if m is None:
        raise ValueError(f"{value!r} is not an ark entry (path:offset)")
    return m.group(1)


def load_wav_entry(
    value: str,
    sample_rate: int | None = None,
    *,
    name: str | None = None,
    strict: bool = False,
    check: bool = True,
    start: float | None = None,
    end: float | None = None,
    max_overshoot: float = 0.5,
    scp_path: str | os.PathLike | None = None,
    fd_dict: dict | None = None,
) -> tuple[np.ndarray, int]:
    """Read the audio of one ``wav.scp`` value as mono float32 ``(T,)``; return ``(wav, rate)``.

    ``name`` labels it in errors (default: the value). ``sample_rate``, ``strict``, ``check``,
    ``start``/``end`` and ``max_overshoot`` are those of :func:`~vocoflow.audio.io.load_audio`
    (resample or refuse another rate; reject empty, non-finite or silent audio; cut a segment).
    With ``scp_path``, a relative file or ark path that does not exist is also looked up from
    the scp's directory and its parents (:func:`~vocoflow.audio.kaldi_io.resolve_entry`);
    ``fd_dict`` keeps ark files open between calls (kaldiio's cache; the caller closes them).
    """
    value = value.strip()
    label = value if name is None else name
    kind = source_kind(value)
    if kind == "pipe":
        data = run_pipe(value, name=label)
        return load_audio(data, sample_rate, strict=strict, name=label, start=start, end=end,
                          max_overshoot=max_overshoot, check=check)
    entry = resolve_entry(value, None if scp_path is None else os.fspath(scp_path))
    if kind == "ark":
        try:
            obj = kaldiio.load_mat(entry, fd_dict=fd_dict)
        except Exception as e:  # kaldiio raises many kinds
            raise AudioError(label, f"cannot read audio from ark ({type(e).__name__}: {e})") from None
        if not (isinstance(obj, tuple) and len(obj) == 2):
            raise AudioError(label, "ark entry is not audio (expected a WAV in the ark)")
        rate, arr = obj
        arr = np.asarray(arr)
        if start is not None or end is not None:
            arr = cut_segment(arr, rate, start, end, label, max_overshoot)
        return prepare_audio(arr, int(rate), name=label, sample_rate=sample_rate, strict=strict, check=check)
    return load_audio(entry, sample_rate, strict=strict, name=label, start=start, end=end,
                      max_overshoot=max_overshoot, check=check)


def wav_entry_duration(value: str, name: str | None = None) -> float:
    """Duration in seconds of the audio of a ``wav.scp`` value (a pipe is run, an ark entry is
    read, a file's header is read; a truncated WAV is refused). Unreadable audio raises ``AudioError``, ``ValueError``,
    ``RuntimeError``, ``OSError`` or ``soundfile.LibsndfileError``."""
    value = value.strip()
    kind = source_kind(value)
    if kind == "pipe":
        info = sf.info(_io.BytesIO(run_pipe(value, name=name or value)))
    elif kind == "ark":
        rate, arr = kaldiio.load_mat(value)
        return len(arr) / rate
    else:
        info = sf.info(value)
    check_truncated(info, name or value)
    if info.frames <= 0:
        raise AudioError(name or value, "no audio samples")
    return info.frames / info.samplerate
