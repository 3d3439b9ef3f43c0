"""Kaldi data directories: read, validate and write ``wav.scp``, ``segments``, ``utt2spk``,
``spk2utt`` and ``text``.

Conventions (Kaldi's): one entry per line, the id first; ids sorted in C-locale (byte) order
and unique; ``wav.scp`` values are a path, an ark path with offset (``a.ark:123``) or a pipe
(``command |``, run with the shell, WAV bytes read from its stdout); ``segments`` lines are
``utt recording start end`` in seconds (``end`` -1: to the end of the recording); relative
paths are relative to the directory the tools run from (the recipe directory).

Every problem found is an :class:`Issue` naming the file and line, e.g.
``data/train/utt2spk:7: error: duplicate id 'a01' (first on line 6)``.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import soundfile as sf

from vocoflow.atomic import atomic_write_text

from .io import AudioError
from .wav_scp import ark_path, load_wav_entry, source_kind, wav_entry_duration

__all__ = [
    "Issue",
    "DataDirError",
    "Utterance",
    "DataDir",
    "validate_data_dir",
    "write_data_dir",
    "load_utterance",
    "source_kind",
]

FILES = ("wav.scp", "segments", "utt2spk", "spk2utt", "text")


@dataclass(frozen=True)
class Issue:
    """One problem in a data directory: ``file:line: severity: message``.

    ``code`` classifies it: ``malformed``, ``duplicate``, ``unsorted``, ``missing-audio``,
    ``unreadable-audio``, ``segment-range``, ``unknown-recording``, ``utt-mismatch``,
    ``spk-mismatch``, ``text-mismatch``, ``missing-file``, ``no-utt2spk``, ``no-text``.
    """

    file: str
    line: int | None
    message: str
    severity: str = "error"
    code: str = ""

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.severity}: {self.message}"


class DataDirError(ValueError):
    """A data directory with errors; ``e.issues`` lists them (message: one per line)."""

    def __init__(self, issues: list[Issue], limit: int = 50):
        self.issues = list(issues)
        shown = [str(i) for i in self.issues[:limit]]
        if len(self.issues) > limit:
            shown.append(f"... and {len(self.issues) - limit} more")
        super().__init__("\n".join(shown))


@dataclass(frozen=True)
class Utterance:
    """One utterance to read: ``source`` is the ``wav.scp`` value of its recording."""

    utt_id: str
    source: str
    recording_id: str
    start: float | None = None
    end: float | None = None
    speaker: str | None = None
    text: str | None = None


@dataclass
class _Table:
    path: str
    entries: dict = field(default_factory=dict)  # id -> value (as parsed)
    lines: dict = field(default_factory=dict)  # id -> line number (first occurrence)
    order: list = field(default_factory=list)  # ids in file order


def _read_table(path: str, kind: str, issues: list[Issue]) -> _Table:
    """Parse one Kaldi table, recording malformed, duplicate and unsorted lines in ``issues``."""
    table = _Table(path)
    prev = None
    unsorted_reported = False
    with open(path, "rb") as f:
        raw_lines = f.read().split(b"\n")
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()
    for lineno, raw in enumerate(raw_lines, 1):
        try:
            line = raw.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError:
            issues.append(Issue(path, lineno, "line is not valid UTF-8", code="malformed"))
            continue
        if not line.strip():
            issues.append(Issue(path, lineno, "empty line", code="malformed"))
            continue
        if line[0].isspace():
            issues.append(Issue(path, lineno, "line starts with whitespace", code="malformed"))
            continue
        fields = line.split()
        key = fields[0]
        value = None
        if kind in ("wav.scp", "text"):
            rest = line[len(key):].strip()
            if kind == "wav.scp" and not rest:
                issues.append(Issue(path, lineno,
                                    f"malformed line: expected '<recording-id> <path or command |>', got {line!r}",
                                    code="malformed"))
                continue
            value = rest
        elif kind == "utt2spk":
            if len(fields) != 2:
                issues.append(Issue(path, lineno, f"malformed line: expected '<utt-id> <speaker-id>', got {line!r}",
                                    code="malformed"))
                continue
            value = fields[1]
        elif kind == "spk2utt":
            if len(fields) < 2:
                issues.append(Issue(path, lineno, f"malformed line: expected '<speaker-id> <utt-id> ...', got {line!r}",
                                    code="malformed"))
                continue
            value = fields[1:]
        elif kind == "segments":
            if len(fields) != 4:
                issues.append(Issue(path, lineno,
                                    f"malformed line: expected '<utt-id> <recording-id> <start> <end>', got {line!r}",
                                    code="malformed"))
                continue
            try:
                start, end = float(fields[2]), float(fields[3])
            except ValueError:
                issues.append(Issue(path, lineno, f"malformed line: start/end are not numbers in {line!r}",
                                    code="malformed"))
                continue
            if not (np.isfinite(start) and np.isfinite(end)) or start < 0 or (end != -1 and end <= start):
                issues.append(Issue(path, lineno,
                                    f"bad segment times: start {fields[2]}, end {fields[3]} "
                                    "(need 0 <= start < end, or end -1)", code="malformed"))
                continue
            value = (fields[1], start, end)
        else:  # pragma: no cover
            raise ValueError(kind)
        if key in table.entries:
            issues.append(Issue(path, lineno, f"duplicate id {key!r} (first on line {table.lines[key]})",
                                code="duplicate"))
            continue
        if prev is not None and key.encode() < prev.encode() and not unsorted_reported:
            issues.append(Issue(path, lineno,
                                f"ids not sorted: {key!r} comes after {prev!r} (sort with 'LC_ALL=C sort')",
                                code="unsorted"))
            unsorted_reported = True
        prev = key
        table.entries[key] = value
        table.lines[key] = lineno
        table.order.append(key)
    return table


class DataDir:
    """A parsed Kaldi data directory.

    ``DataDir(path)`` reads it and collects :attr:`issues`; :meth:`check` raises a
    :class:`DataDirError` if any is an error. :meth:`utterances` lists what to read.
    With ``check_audio`` the header of every recording's file (or ark entry) is read, so that
    unreadable, empty or truncated audio is an ``unreadable-audio`` error (and segment ends are
    checked against the durations); ``run_pipes`` also runs every ``command |`` entry for that.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        check_audio: bool = True,
        run_pipes: bool = False,
        max_overshoot: float = 0.5,
    ):
        self.path = os.fspath(path)
        self.issues: list[Issue] = []
        self.wav_scp = self.segments = self.utt2spk = self.spk2utt = self.text = None
        if not os.path.isdir(self.path):
            self.issues.append(Issue(self.path, None, "not a directory", code="missing-file"))
            return
        tables = {}
        for name in FILES:
            p = os.path.join(self.path, name)
            if os.path.isfile(p):
                tables[name] = _read_table(p, name, self.issues)
        self.wav_scp = tables.get("wav.scp")
        self.segments = tables.get("segments")
        self.utt2spk = tables.get("utt2spk")
        self.spk2utt = tables.get("spk2utt")
        self.text = tables.get("text")
        if self.wav_scp is None:
            self.issues.append(Issue(os.path.join(self.path, "wav.scp"), None,
                                     "missing (every data directory needs wav.scp)", code="missing-file"))
            return
        self._cross_check(check_audio, run_pipes, max_overshoot)

    # ---- checks across files
    def _cross_check(self, check_audio: bool, run_pipes: bool, max_overshoot: float) -> None:
        wav = self.wav_scp
        issues = self.issues
        if self.segments is not None:
            utt_table = self.segments
            for utt, (rec, _, _) in self.segments.entries.items():
                if rec not in wav.entries:
                    issues.append(Issue(self.segments.path, self.segments.lines[utt],
                                        f"recording {rec!r} of utterance {utt!r} is not in {wav.path}",
                                        code="unknown-recording"))
        else:
            utt_table = wav
        utts = utt_table.entries

        # audio: files exist, and segments end within their recording
        durations: dict[str, float | None] = {}
        for rec, value in wav.entries.items():
            kind = source_kind(value)
            line = wav.lines[rec]
            if kind == "file" and not os.path.isfile(value):
                issues.append(Issue(wav.path, line, f"missing audio: file {value!r} of {rec!r} not found",
                                    code="missing-audio"))
                continue
            if kind == "ark":
                ark = ark_path(value)
                if not os.path.isfile(ark):
                    issues.append(Issue(wav.path, line, f"missing audio: ark {ark!r} of {rec!r} not found",
                                        code="missing-audio"))
                    continue
            if check_audio and (kind != "pipe" or run_pipes):
                try:
                    durations[rec] = wav_entry_duration(value, name=f"{rec} ({value})")
                except (AudioError, RuntimeError, ValueError, OSError, sf.LibsndfileError) as e:
                    issues.append(Issue(wav.path, line, f"cannot read audio of {rec!r}: {e}", code="unreadable-audio"))
        if self.segments is not None:
            for utt, (rec, start, end) in self.segments.entries.items():
                dur = durations.get(rec)
                if dur is None:
                    continue
                line = self.segments.lines[utt]
                if start >= dur:
                    issues.append(Issue(self.segments.path, line,
                                        f"segment {utt!r} starts at {start:.3f} s, "
                                        f"past the end of recording {rec!r} ({dur:.3f} s)", code="segment-range"))
                elif end != -1 and end > dur + max_overshoot:
                    issues.append(Issue(self.segments.path, line,
                                        f"segment {utt!r} ends at {end:.3f} s, "
                                        f"past the end of recording {rec!r} ({dur:.3f} s)", code="segment-range"))

        # utt2spk <-> utterances
        if self.utt2spk is None:
            issues.append(Issue(os.path.join(self.path, "utt2spk"), None,
                                "missing (each utterance is treated as its own speaker)", "warning", code="no-utt2spk"))
        else:
            u2s = self.utt2spk
            for utt in u2s.order:
                if utt not in utts:
                    issues.append(Issue(u2s.path, u2s.lines[utt],
                                        f"utterance {utt!r} has no audio (not in {utt_table.path})",
                                        code="utt-mismatch"))
            for utt in utt_table.order:
                if utt not in u2s.entries:
                    issues.append(Issue(utt_table.path, utt_table.lines[utt], f"utterance {utt!r} is not in {u2s.path}",
                                        code="utt-mismatch"))

        # spk2utt must be the inverse of utt2spk
        if self.spk2utt is not None and self.utt2spk is not None:
            s2u, u2s = self.spk2utt, self.utt2spk
            expected: dict[str, list[str]] = defaultdict(list)
            for utt in u2s.order:
                expected[u2s.entries[utt]].append(utt)
            for spk in s2u.order:
                listed = s2u.entries[spk]
                line = s2u.lines[spk]
                if spk not in expected:
                    issues.append(Issue(s2u.path, line,
                                        f"utt2spk/spk2utt mismatch: speaker {spk!r} is not in {u2s.path}",
                                        code="spk-mismatch"))
                    continue
                got, want = set(listed), set(expected[spk])
                if len(listed) != len(got):
                    issues.append(Issue(s2u.path, line,
                                        f"utt2spk/spk2utt mismatch: speaker {spk!r} lists an utterance twice",
                                        code="spk-mismatch"))
                if got != want:
                    extra = sorted(got - want)[:3]
                    missing = sorted(want - got)[:3]
                    detail = []
                    if extra:
                        detail.append(f"listed but not in utt2spk for this speaker: {', '.join(extra)}")
                    if missing:
                        detail.append(f"in utt2spk but not listed: {', '.join(missing)}")
                    issues.append(Issue(s2u.path, line,
                                        f"utt2spk/spk2utt mismatch for speaker {spk!r}: {'; '.join(detail)}",
                                        code="spk-mismatch"))
            for spk, spk_utts in expected.items():
                if spk not in s2u.entries:
                    first = spk_utts[0]
                    issues.append(Issue(u2s.path, u2s.lines[first],
                                        f"utt2spk/spk2utt mismatch: speaker {spk!r} is not in {s2u.path}",
                                        code="spk-mismatch"))
        elif self.spk2utt is not None:
            issues.append(Issue(self.spk2utt.path, None, "spk2utt without utt2spk", code="spk-mismatch"))

        # text
        if self.text is not None:
            for utt in self.text.order:
                if utt not in utts:
                    issues.append(Issue(self.text.path, self.text.lines[utt],
                                        f"transcript for unknown utterance {utt!r} (not in {utt_table.path})",
                                        code="text-mismatch"))
            without = [u for u in utt_table.order if u not in self.text.entries]
            if without:
                issues.append(Issue(self.text.path, None,
                                    f"{len(without)} utterance(s) have no transcript (first: {without[0]!r})",
                                    "warning", code="no-text"))

    # ---- results
    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.severity != "error"]

    def check(self) -> "DataDir":
        """Raise :class:`DataDirError` if any issue is an error; return self."""
        if self.errors:
            raise DataDirError(self.errors)
        return self

    def utterances(self) -> list[Utterance]:
        """The utterances, sorted by id (only those whose recording is in ``wav.scp``)."""
        if self.wav_scp is None:
            return []
        u2s = self.utt2spk.entries if self.utt2spk else {}
        text = self.text.entries if self.text else {}
        out = []
        if self.segments is not None:
            for utt, (rec, start, end) in self.segments.entries.items():
                if rec in self.wav_scp.entries:
                    out.append(Utterance(utt, self.wav_scp.entries[rec], rec, start, None if end == -1 else end,
                                         u2s.get(utt), text.get(utt)))
        else:
            for utt, value in self.wav_scp.entries.items():
                out.append(Utterance(utt, value, utt, None, None, u2s.get(utt), text.get(utt)))
        out.sort(key=lambda u: u.utt_id.encode())
        return out


def validate_data_dir(path: str | os.PathLike, check_audio: bool = True, run_pipes: bool = False) -> list[Issue]:
    """All issues (errors and warnings) found in a data directory."""
    return DataDir(path, check_audio=check_audio, run_pipes=run_pipes).issues


def load_utterance(
    utt: Utterance,
    sample_rate: int | None = None,
    *,
    strict: bool = False,
    check: bool = True,
    max_overshoot: float = 0.5,
) -> tuple[np.ndarray, int]:
    """Read one utterance (file, ark entry or pipe; cut to its segment) as mono float32
    with :func:`~vocoflow.audio.wav_scp.load_wav_entry`.

    Errors are :class:`AudioError` naming the file (or the command) and the utterance (a
    whole-file utterance of a plain file is named by the file alone).
    """
    value = utt.source.strip()
    whole_file = utt.start is None and utt.end is None and utt.utt_id == utt.recording_id
    label = value if whole_file and source_kind(value) == "file" else f"{value} (utterance {utt.utt_id})"
    return load_wav_entry(value, sample_rate, name=label, strict=strict, check=check,
                          start=utt.start, end=utt.end, max_overshoot=max_overshoot)


def _write_table(path: str, rows: dict, fmt) -> None:
    keys = sorted(rows, key=lambda k: k.encode())
    text = "".join(f"{k} {fmt(rows[k])}\n" for k in keys)
    try:
        with open(path, encoding="utf-8") as f:
            if f.read() == text:
                return  # unchanged: keep its modification time (recipes compare them)
    except (FileNotFoundError, UnicodeDecodeError):
        pass
    atomic_write_text(path, text)


def write_data_dir(
    path: str | os.PathLike,
    wav_scp: dict[str, str],
    utt2spk: dict[str, str] | None = None,
    text: dict[str, str] | None = None,
    segments: dict[str, tuple[str, float, float]] | None = None,
) -> None:
    """Write a sorted Kaldi data directory (``spk2utt`` derived from ``utt2spk``).

    Files are written atomically, and only when their content changes."""
    path = os.fspath(path)
    os.makedirs(path, exist_ok=True)
    _write_table(os.path.join(path, "wav.scp"), wav_scp, str)
    if segments is not None:
        _write_table(os.path.join(path, "segments"), segments, lambda s: f"{s[0]} {s[1]:.3f} {s[2]:.3f}")
    if utt2spk is not None:
        _write_table(os.path.join(path, "utt2spk"), utt2spk, str)
        s2u: dict[str, list[str]] = defaultdict(list)
        for utt in sorted(utt2spk, key=lambda k: k.encode()):
            s2u[utt2spk[utt]].append(utt)
        _write_table(os.path.join(path, "spk2utt"), s2u, " ".join)
    if text is not None:
        _write_table(os.path.join(path, "text"), text, str)
