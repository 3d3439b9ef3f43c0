"""Audio I/O: read anything soundfile reads, check it, mix to mono, resample; write 16-bit WAV.

Every problem with an input file is an :class:`AudioError` whose message starts with the file
name (or the ``command |`` that produced it), so batch tools can list bad files and go on.

A truncated WAV file (its header declares more audio data than the file holds: a partial copy
or download) is refused, not read short (:func:`check_truncated`). A streamed WAV, as a pipe
writes it, declares a placeholder length (``0xFFFFFFFF``, or sox's ``0x7FFFF000``), which is
not a claim and is read to its end.
"""

from __future__ import annotations

import io as _io
import logging
import os
import re
import subprocess

import numpy as np
import soundfile as sf
import torch
import torchaudio

from vocoflow.atomic import atomic_open

__all__ = [
    "AudioError",
    "load_audio",
    "prepare_audio",
    "cut_segment",
    "check_audio",
    "check_truncated",
    "resample",
    "run_pipe",
    "save_wav",
    "to_int16",
    "from_int16",
    "SILENCE_THRESHOLD",
]

log = logging.getLogger(__name__)

#: Peak absolute amplitude below which a whole file counts as silent: one 16-bit step.
SILENCE_THRESHOLD = 1.0 / 32768

_resample_logged: set[tuple[int, int]] = set()


class AudioError(ValueError):
    """An unusable audio input. ``str(e)`` is ``"<path>: <reason>"``; ``e.path``, ``e.reason``.

    >>> str(AudioError("a.wav", "empty audio (0 samples)"))
    'a.wav: empty audio (0 samples)'
    """

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # picklable across worker processes
        return (type(self), (self.path, self.reason))


# libsndfile's log of a WAV header whose data chunk is longer than the file: "data : 32000 (should be 15978)"
_DATA_LENGTH = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
# declared lengths from here on are placeholders of streamed WAVs (sox writes 0x7FFFF000, others 0xFFFFFFFF)
_PLACEHOLDER_LENGTH = 0x7FFF0000


def check_truncated(info, name) -> None:
    """Raise :class:`AudioError` if ``info`` (a ``soundfile.SoundFile`` or ``soundfile.info``
    result, via its libsndfile log ``extra_info``) is a WAV whose header declares more audio
    data than the file holds."""
    m = _DATA_LENGTH.search(getattr(info, "extra_info", "") or "")
    if m is None:
        return
    declared, present = int(m.group(1)), int(m.group(2))
    if present < declared < _PLACEHOLDER_LENGTH:
        raise AudioError(name, f"truncated WAV file: the header declares {declared} bytes of audio data, "
                               f"the file holds {present} (a partial copy or download?)")


def run_pipe(command: str, name: str | None = None, timeout: float | None = None) -> bytes:
    """Run a Kaldi ``wav.scp`` pipe (``"sox in.flac -t wav - |"``) and return its stdout."""
    cmd = command.strip()
    if cmd.endswith("|"):
        cmd = cmd[:-1].rstrip()
    label = name or command
    try:
        proc = subprocess.run(
            cmd, shell=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise AudioError(label, f"command timed out after {timeout} s") from None
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        tail = err[-1] if err else "no error output"
        raise AudioError(label, f"command exited with status {proc.returncode}: {tail}")
    if not proc.stdout:
        raise AudioError(label, "command wrote no audio to stdout")
    return proc.stdout


def to_int16(wav) -> np.ndarray:
    """Float in [-1, 1] to int16 (scale 32768, rounded, clipped); int16 input is returned as is."""
    wav = wav.detach().cpu().numpy() if isinstance(wav, torch.Tensor) else np.asarray(wav)
    if wav.dtype == np.int16:
        return wav
    return np.clip(np.round(wav.astype(np.float64) * 32768.0), -32768, 32767).astype(np.int16)


def from_int16(wav: np.ndarray) -> np.ndarray:
    """int16 to float32 in [-1, 1) (the inverse of :func:`to_int16` on its range)."""
    return wav.astype(np.float32) / np.float32(32768.0)


def resample(wav: np.ndarray, orig_sr: int, new_sr: int) -> np.ndarray:
    """Band-limited resampling of a 1-D float signal with torchaudio."""
    if orig_sr == new_sr:
        return wav
    x = torchaudio.functional.resample(torch.from_numpy(np.ascontiguousarray(wav)), orig_sr, new_sr)
    return x.numpy().astype(np.float32, copy=False)


def check_audio(wav: np.ndarray, name, silence_threshold: float = SILENCE_THRESHOLD) -> None:
    """Raise :class:`AudioError` for empty, non-finite or all-silent audio."""
    if wav.size == 0:
        raise AudioError(name, "empty audio (0 samples)")
    finite = np.isfinite(wav)
    if not finite.all():
        bad = int(wav.size - finite.sum())
        raise AudioError(name, f"audio contains NaN or infinite values ({bad} of {wav.size} samples)")
    peak = float(np.max(np.abs(wav)))
    if peak < silence_threshold:
        raise AudioError(name, f"all-silent audio (peak amplitude {peak:.3g})")


def load_audio(
    source,
    sample_rate: int | None = None,
    *,
    strict: bool = False,
    name: str | None = None,
    start: float | None = None,
    end: float | None = None,
    max_overshoot: float = 0.5,
    check: bool = True,
    silence_threshold: float = SILENCE_THRESHOLD,
) -> tuple[np.ndarray, int]:
    """Read audio as mono float32 ``(T,)`` and return ``(wav, rate)``.

    ``source`` is a path, the bytes of an audio file (e.g. a pipe's output) or a binary file
    object; ``name`` labels it in errors (default: the path). With ``sample_rate`` the audio is
    resampled to it when its rate differs (logged), or refused when ``strict``. ``start``/``end``
    (seconds) cut a Kaldi segment; an end past the file by more than ``max_overshoot`` seconds
    is an error (Kaldi's ``extract-segments`` rule), a smaller overshoot is truncated.
    With ``check`` the result must be non-empty, finite and not all-silent.
    """
    label = name if name is not None else (os.fspath(source) if isinstance(source, (str, os.PathLike)) else "<bytes>")
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.exists(path):
            raise AudioError(label, "no such file")
        if os.path.isdir(path):
            raise AudioError(label, "is a directory, not an audio file")
        if os.path.getsize(path) == 0:
            raise AudioError(label, "empty file (0 bytes)")
        handle = path
    elif isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise AudioError(label, "empty file (0 bytes)")
        handle = _io.BytesIO(bytes(source))
    else:
        handle = source
    try:
        with sf.SoundFile(handle) as f:
            check_truncated(f, label)
            rate = f.samplerate
            total = f.frames
            first, last = 0, total
            if start is not None or end is not None:
                first, last = _segment_bounds(total, rate, start, end, label, max_overshoot)
                f.seek(first)
            data = f.read(last - first, dtype="float32", always_2d=True)
    except AudioError:
        raise
    except (sf.LibsndfileError, sf.SoundFileError, RuntimeError, TypeError, ValueError) as e:
        raise AudioError(label, f"cannot read audio ({e})") from None
    return prepare_audio(
        data, rate, name=label, sample_rate=sample_rate, strict=strict, check=check,
        silence_threshold=silence_threshold,
    )


def prepare_audio(
    data: np.ndarray,
    rate: int,
    *,
    name,
    sample_rate: int | None = None,
    strict: bool = False,
    check: bool = True,
    silence_threshold: float = SILENCE_THRESHOLD,
) -> tuple[np.ndarray, int]:
    """Mix ``(T,)``/``(T, C)`` audio (float, or int16 scaled by 1/32768) to mono float32,
    resample or refuse (``strict``) a rate other than ``sample_rate``, and check it."""
    data = np.asarray(data)
    if data.dtype == np.int16:
        data = from_int16(data)
    elif data.dtype.kind in "iu":
        raise AudioError(name, f"unsupported integer sample type {data.dtype}")
    if data.ndim == 2:
        wav = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    elif data.ndim == 1:
        wav = data
    else:
        raise AudioError(name, f"expected (samples,) or (samples, channels) audio, got {data.shape}")
    wav = np.ascontiguousarray(wav, dtype=np.float32)
    if sample_rate is not None and rate != sample_rate:
        if strict:
            raise AudioError(
                name, f"sample rate {rate} Hz, expected {sample_rate} Hz (strict mode: no resampling)"
            )
        if (rate, sample_rate) not in _resample_logged:
            _resample_logged.add((rate, sample_rate))
            log.info("resampling %s from %d Hz to %d Hz (and any other such file)", name, rate, sample_rate)
        else:
            log.debug("resampling %s from %d Hz to %d Hz", name, rate, sample_rate)
        if check:
            check_audio(wav, name, silence_threshold)  # before resampling smears NaNs around
        wav = resample(wav, rate, sample_rate)
        rate = sample_rate
    if check:
        check_audio(wav, name, silence_threshold)
    return wav, rate


def cut_segment(
    wav: np.ndarray, rate: int, start: float | None, end: float | None, name,
    max_overshoot: float = 0.5,
) -> np.ndarray:
    """Samples ``[start, end)`` (seconds; ``end`` None or -1: to the end) of an in-memory signal,
    with the overshoot rule of :func:`load_audio`."""
    first, last = _segment_bounds(len(wav), rate, start, end, name, max_overshoot)
    return wav[first:last]


def _segment_bounds(total, rate, start, end, name, max_overshoot):
    if end is not None and end < 0:
        end = None
    first = int(round((start or 0.0) * rate))
    last = total if end is None else int(round(end * rate))
    if first < 0 or last <= first:
        raise AudioError(name, f"bad segment times start={start} end={end}")
    if first >= total:
        raise AudioError(
            name, f"segment start {start:.3f} s is past the end of the audio ({total / rate:.3f} s)"
        )
    if last > total:
        if last - total > max_overshoot * rate:
            raise AudioError(
                name, f"segment end {end:.3f} s is past the end of the audio ({total / rate:.3f} s)"
            )
        last = total
    return first, last


def save_wav(path: str | os.PathLike, wav, sample_rate: int, format: str = "WAV") -> None:
    """Write mono (``(T,)``) or multi-channel (``(T, C)``) audio as 16-bit PCM, atomically, as
    WAV (or another container soundfile writes 16-bit PCM in, e.g. ``format="FLAC"``).

    Float input is scaled by 32768, rounded and clipped; int16 input is written as is. The
    file is encoded in memory first and then written through a temporary file renamed into
    place, so a full disk (or any write error) raises ``OSError`` and leaves no file (an older
    complete one stays).
    """
    data = to_int16(wav)
    buf = _io.BytesIO()
    sf.write(buf, data, int(sample_rate), format=format, subtype="PCM_16")
    with atomic_open(path, "wb") as f:
        f.write(buf.getvalue())
