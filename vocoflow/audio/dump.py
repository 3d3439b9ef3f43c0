"""Dump directories: data directory -> dump directory (log-mel + aligned audio), and its layout.

Dump directory layout (written by :func:`preprocess`)::

    DUMP/
      feats.scp          utt -> DUMP/data/feats.ark:offset   float32 (frames, n_mels)
      wav.scp            utt -> DUMP/data/wav.ark:offset     16-bit mono WAV inside the ark
      utt2num_frames     utt frames          (samples = frames * hop_length, always)
      feats_config.yaml  the MelConfig used
      f0.scp             utt -> DUMP/data/f0.ark:offset      float32 (frames,) F0 in Hz, 0 = unvoiced
                         (only with a pitch tracker, see :mod:`vocoflow.audio.pitch`)
      pitch_config.yaml  the PitchConfig used (with f0.scp)
      bad_utts           utt<TAB>reason for each skipped utterance (empty if none)
      data/feats.ark data/wav.ark
      .done              written last: a dump without it is incomplete (interrupted run)

A dump's ``wav.scp`` holds ark entries only (:func:`read_dump_wav_scp` refuses pipes and plain
files there: training never runs a shell command found in a dump).

A run replaces a dump only by a complete new one (:class:`StagedDump`): every file is first
written into a hidden staging directory inside ``DUMP`` (``DUMP/.staging.tmp.*``; the scp
lines already name the final ark paths); only when all of them are written is ``.done``
removed, each file renamed to its place (index files of the old run that the new one does not
write are removed) and ``.done`` written again. A run that fails or finds nothing usable leaves
an existing dump byte-identical (and other files in ``DUMP``, such as a ``log/`` directory,
are never touched).

:func:`vocoflow.audio.stats.normalize` writes the same layout with normalised features, the
other index files copied (``wav.scp`` still points at the input dump's ark) and
``norm_stats.npz`` (the statistics used). A new per-utterance stream goes into
:data:`INDEX_FILES` (and, if normalisation rewrites it, :data:`FEATURE_FILES`).

Each utterance is read (file, ark or pipe; cut to its segment), mixed to mono, resampled to the
configured rate (or refused with ``strict``), checked (not empty, finite, not silent),
optionally trimmed of leading/trailing silence, quantised to 16 bits, and its mel is computed
*from the quantised audio*: on the non-centred grid the audio is first trimmed to a multiple of
the hop (audio and features in the dump then match exactly); on the centred grid
(``MelConfig.center``) the mel is that of the whole waveform (``1 + T // hop`` frames) and the
stored audio is extended by repeating its last sample to ``frames * hop`` samples
(:meth:`~vocoflow.audio.mel.MelConfig.fit_audio`, as ParallelWaveGAN's preprocessing does).
Output is deterministic and does not depend on ``n_jobs``: workers only compute,
the parent writes in sorted utterance order.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import shutil
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from vocoflow.atomic import atomic_write_text, move_file, tmp_dir_for

from .datadir import DataDir, DataDirError, Issue, Utterance, load_utterance
from .io import AudioError, from_int16, to_int16
from .kaldi_io import ArkScpWriter, read_scp
from .mel import MelConfig, MelSpectrogram, align
from .pitch import PitchConfig, track_f0
from .wav_scp import source_kind

__all__ = [
    "DONE",
    "PreprocessResult",
    "preprocess",
    "process_utterance",
    "INDEX_FILES",
    "FEATURE_FILES",
    "is_complete",
    "require_complete",
    "start_dump",
    "finish_dump",
    "StagedDump",
    "OUTPUT_FILES",
    "read_utt2num_frames",
    "read_dump_wav_scp",
]

log = logging.getLogger(__name__)

DONE = ".done"
#: The index files of a dump (besides :data:`DONE` and the arks under ``data/``).
INDEX_FILES = ("feats.scp", "wav.scp", "utt2num_frames", "feats_config.yaml", "bad_utts", "norm_stats.npz",
               "f0.scp", "pitch_config.yaml")
#: The index files that describe the features, rewritten by normalisation (the others are copied).
FEATURE_FILES = ("feats.scp", "norm_stats.npz")
#: Every file (relative to the dump) that a run of preprocess or normalize owns, besides DONE.
OUTPUT_FILES = ("data/feats.ark", "data/wav.ark", "data/f0.ark") + INDEX_FILES


def is_complete(dump_dir: str | os.PathLike) -> bool:
    return os.path.isfile(os.path.join(dump_dir, DONE))


def require_complete(dump_dir: str | os.PathLike) -> None:
    if not os.path.isdir(dump_dir):
        raise FileNotFoundError(f"{dump_dir}: no such dump directory")
    if not is_complete(dump_dir):
        raise ValueError(
            f"{dump_dir}: incomplete dump directory (no {DONE} marker: the run that wrote it "
            "failed or was interrupted; run it again)"
        )


def start_dump(dump_dir: str) -> str:
    """Mark ``dump_dir`` incomplete and remove the index files of any earlier run; return its
    ``data/`` directory (created)."""
    os.makedirs(os.path.join(dump_dir, "data"), exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(dump_dir, DONE))
    for name in INDEX_FILES:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(dump_dir, name))
    return os.path.join(dump_dir, "data")


def finish_dump(dump_dir: str, summary: str) -> None:
    """Mark ``dump_dir`` complete (written last; ``summary`` is the marker's text)."""
    atomic_write_text(os.path.join(dump_dir, DONE), summary)


class StagedDump:
    """The files of a new dump, written into a staging directory inside ``dump_dir`` and
    swapped in by :meth:`commit` (see the module docstring); :meth:`abort` removes them and
    leaves ``dump_dir`` as it was. Write file ``name`` at :meth:`path` and name it in scp lines
    as :meth:`final`."""

    def __init__(self, dump_dir: str | os.PathLike):
        self.dump_dir = os.fspath(dump_dir)
        if os.path.exists(self.dump_dir) and not os.path.isdir(self.dump_dir):
            raise NotADirectoryError(f"{self.dump_dir}: exists and is not a directory")
        self.created = not os.path.isdir(self.dump_dir)
        os.makedirs(self.dump_dir, exist_ok=True)
        self.tmp = tmp_dir_for(os.path.join(self.dump_dir, "staging"))
        os.makedirs(os.path.join(self.tmp, "data"))

    def path(self, name: str) -> str:
        return os.path.join(self.tmp, name)

    def final(self, name: str) -> str:
        return os.path.join(self.dump_dir, name)

    def commit(self, summary: str) -> None:
        """Swap the staged files in and write :data:`DONE` (``summary``) last."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.final(DONE))
        for name in OUTPUT_FILES:
            if os.path.isfile(self.path(name)):
                move_file(self.path(name), self.final(name))
            else:  # an earlier run's file this run does not write (e.g. f0.scp)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.final(name))
        finish_dump(self.dump_dir, summary)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
        if self.created:  # leave no empty directory behind for a run that wrote nothing
            with contextlib.suppress(OSError):
                os.rmdir(self.dump_dir)


def read_dump_wav_scp(path: str | os.PathLike) -> dict[str, str]:
    """A dump's ``wav.scp`` (``{utt: ark entry}``). Dumps hold their audio in arks: a pipe
    (``command |``) or a plain file there raises ``ValueError('<file>:<line>: ...')``, so that a
    shell command put into a dump is never run."""
    path = os.fspath(path)
    entries = read_scp(path)
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            key, _, value = line.strip().partition(" ")
            value = value.strip()
            if value and source_kind(value) != "ark":
                what = "a pipe" if source_kind(value) == "pipe" else "a plain file"
                raise ValueError(f"{path}:{lineno}: utterance {key}: {what} ({value!r}); a dump's wav.scp holds "
                                 "ark entries (path:offset) only: run `vocoflow preprocess` to make a dump")
    return entries


def read_utt2num_frames(path: str | os.PathLike) -> dict[str, int]:
    out = {}
    for k, v in read_scp(path).items():
        try:
            out[k] = int(v)
        except ValueError:
            raise ValueError(f"{path}: utterance {k}: not an integer frame count: {v!r}") from None
    return out


# ------------------------------------------------------------------------------------------
# one utterance


@dataclass
class _Job:
    config: MelConfig
    strict: bool = False
    trim_db: float | None = None
    mel: MelSpectrogram | None = None
    pitch: PitchConfig | None = None
    notes: list | None = None  # log messages of a worker process, passed back to the parent


_JOB: _Job | None = None


class _ListHandler(logging.Handler):
    def __init__(self, sink: list):
        super().__init__(logging.INFO)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append((record.levelno, record.getMessage()))


def _init_worker(config_dict: dict, strict: bool, trim_db: float | None, capture: bool = False,
                 pitch: dict | None = None) -> None:
    global _JOB
    torch.set_num_threads(1)
    config = MelConfig.from_dict(config_dict)
    _JOB = _Job(config, strict, trim_db, MelSpectrogram(config).eval(),
                PitchConfig.from_dict(pitch) if pitch is not None else None)
    if capture:  # a spawned worker: its log records go back with the results
        _JOB.notes = []
        logger = logging.getLogger("vocoflow")
        logger.setLevel(logging.INFO)
        logger.addHandler(_ListHandler(_JOB.notes))
        logger.propagate = False


def process_utterance(utt: Utterance, config: MelConfig, mel: MelSpectrogram | None = None, strict: bool = False,
                      trim_db: float | None = None):
    """Return ``(int16 audio (frames*hop,), float32 mel (frames, n_mels))`` for one utterance.

    Raises :class:`~vocoflow.audio.io.AudioError` for unusable audio (naming the file).
    """
    if mel is None:
        mel = MelSpectrogram(config)
    wav, _ = load_utterance(utt, config.sample_rate, strict=strict)
    if trim_db is not None:
        import librosa

        _, (first, last) = librosa.effects.trim(
            wav, top_db=trim_db, frame_length=config.n_fft, hop_length=config.hop_length
        )
        wav = wav[first:last]
    pcm = to_int16(wav)
    need = config.min_samples  # one hop, longer than the reflected edge
    if not config.center:  # the non-centred grid: features of the hop-aligned audio
        pcm = align(pcm, config.hop_length)
        need = -(-need // config.hop_length) * config.hop_length
    if len(pcm) < need:
        raise AudioError(
            utt.source, f"utterance {utt.utt_id} too short: {len(wav)} samples at {config.sample_rate} Hz "
            f"(need at least {need})"
        )
    if not np.any(pcm):
        raise AudioError(utt.source, f"utterance {utt.utt_id} is silent after trimming and 16-bit quantisation")
    with torch.no_grad():
        feats = mel(torch.from_numpy(from_int16(pcm)))
    feats = feats.T.contiguous().numpy().astype(np.float32, copy=False)
    assert feats.shape[0] == config.num_frames(len(pcm))
    pcm = config.fit_audio(pcm, feats.shape[0])
    assert config.num_samples(feats.shape[0]) == len(pcm)
    return pcm, feats


def _work(utt: Utterance):
    job = _JOB
    try:
        pcm, feats = process_utterance(utt, job.config, job.mel, job.strict, job.trim_db)
        f0 = None
        if job.pitch is not None:
            f0 = track_f0(from_int16(pcm), job.config.sample_rate, job.config.hop_length,
                          feats.shape[0], job.pitch)
        out = (utt.utt_id, pcm, feats, f0, None)
    except AudioError as e:
        out = (utt.utt_id, None, None, None, str(e))
    except Exception as e:  # keep the batch going; report the utterance
        out = (utt.utt_id, None, None, None, f"{utt.source}: unexpected {type(e).__name__}: {e}")
    notes = None
    if job.notes:
        notes, job.notes[:] = list(job.notes), []
    return out + (notes,)


# ------------------------------------------------------------------------------------------
# preprocess


@dataclass
class PreprocessResult:
    n_ok: int = 0
    bad: list[tuple[str, str]] = field(default_factory=list)
    frames: int = 0
    audio_seconds: float = 0.0
    elapsed: float = 0.0

    @property
    def speed(self) -> float:
        """Seconds of audio processed per second of wall-clock time."""
        return self.audio_seconds / self.elapsed if self.elapsed > 0 else float("inf")


@contextlib.contextmanager
def _results(utts, config, n_jobs, strict, trim_db, start_method=None, pitch=None):
    """Yield an iterator of ``_work`` results in input order (in-process or with a pool)."""
    global _JOB
    if n_jobs <= 1:
        saved, old = torch.get_num_threads(), _JOB
        try:
            _init_worker(config.to_dict(), strict, trim_db, pitch=pitch)
            yield (_work(utt) for utt in utts)
        finally:
            _JOB = old
            torch.set_num_threads(saved)
        return
    # fork starts workers at once; they set torch to one thread before any torch op, so the
    # parent's thread pools are never used in a child. "spawn" works everywhere but every
    # worker then imports torch again (seconds).
    if start_method is None:
        start_method = os.environ.get("VOCOFLOW_MP_START") or (
            "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        )
    ctx = multiprocessing.get_context(start_method)
    chunksize = max(1, min(16, len(utts) // (n_jobs * 8)))
    with ctx.Pool(n_jobs, initializer=_init_worker, initargs=(config.to_dict(), strict, trim_db, True, pitch)) as pool:
        yield pool.imap(_work, utts, chunksize=chunksize)


def _write_results(stream, feats_w, wav_w, config, result, f0_w=None):
    """Write the successful results in order; yield ``(utt_id, frames)`` for each."""
    for utt_id, pcm, feats, f0, err, notes in stream:
        for level, message in notes or ():
            log.log(level, "%s", message)
        if err is not None:
            result.bad.append((utt_id, err))
            log.debug("skipping %s: %s", utt_id, err)
            continue
        feats_w.write(utt_id, feats)
        wav_w.write(utt_id, (config.sample_rate, pcm))
        if f0_w is not None:
            f0_w.write(utt_id, f0)
        result.n_ok += 1
        result.frames += feats.shape[0]
        yield utt_id, feats.shape[0]


def preprocess(
    data_dir: str | os.PathLike,
    dump_dir: str | os.PathLike,
    config: MelConfig,
    n_jobs: int = 1,
    *,
    strict: bool = False,
    trim_db: float | None = None,
    progress=None,
    pitch: PitchConfig | None = None,
) -> PreprocessResult:
    """Extract features and aligned audio of a Kaldi data directory into ``dump_dir``.

    Bad utterances are skipped and listed in ``dump_dir/bad_utts`` (and the result). Returns a
    :class:`PreprocessResult`; when no utterance is usable nothing is written (an existing dump
    is left as it was) and ``n_ok`` is 0. The new dump replaces an old one only when it is
    complete (:class:`StagedDump`). Structural errors in the data directory (malformed, duplicate or
    unsorted lines, mismatched files) raise :class:`~vocoflow.audio.datadir.DataDirError`;
    missing or unreadable audio only skips the utterances concerned. ``progress`` wraps the
    result iterator, e.g. ``functools.partial(tqdm.tqdm, desc=...)``. With ``pitch`` (a
    :class:`~vocoflow.audio.pitch.PitchConfig`) the F0 of every utterance is tracked on the mel
    frame grid and written as ``f0.scp`` beside the features.
    """
    t0 = time.perf_counter()
    data_dir, dump_dir = os.fspath(data_dir), os.fspath(dump_dir)
    dd = DataDir(data_dir, check_audio=False)
    fatal = [i for i in dd.errors if i.code not in ("missing-audio",)]
    if fatal:
        raise DataDirError(fatal)
    for issue in dd.warnings:
        log.warning("%s", issue)
    utts = dd.utterances()
    if not utts:
        raise DataDirError([Issue(os.path.join(data_dir, "wav.scp"), None, "no utterances", code="empty")])
    result = PreprocessResult()
    stage = StagedDump(dump_dir)
    try:
        def writer(name):
            return ArkScpWriter(stage.path(f"data/{name}.ark"), stage.path(f"{name}.scp"),
                                ark_name=stage.final(f"data/{name}.ark"))

        feats_w, wav_w = writer("feats"), writer("wav")
        f0_w = writer("f0") if pitch is not None else None
        writers = [w for w in (feats_w, wav_w, f0_w) if w is not None]
        pitch_dict = pitch.to_dict() if pitch is not None else None
        try:
            with _results(utts, config, n_jobs, strict, trim_db, pitch=pitch_dict) as stream:
                if progress is not None:  # workers start above, before the progress bar's thread
                    stream = progress(stream, total=len(utts))
                results = list(_write_results(stream, feats_w, wav_w, config, result, f0_w))
            if result.n_ok == 0:  # nothing usable: nothing written, an existing dump kept
                for w in writers:
                    w.abort()
                stage.abort()
                result.elapsed = time.perf_counter() - t0
                return result
            for w in writers:
                w.commit()
        except BaseException:
            for w in writers:
                w.abort()
            raise
        atomic_write_text(stage.path("bad_utts"), "".join(f"{u}\t{reason}\n" for u, reason in result.bad))
        atomic_write_text(stage.path("utt2num_frames"), "".join(f"{u} {n}\n" for u, n in results))
        config.save(stage.path("feats_config.yaml"))
        if pitch is not None:
            import yaml

            atomic_write_text(stage.path("pitch_config.yaml"), yaml.safe_dump(pitch.to_dict(), sort_keys=False))
        result.audio_seconds = config.num_samples(result.frames) / config.sample_rate
        result.elapsed = time.perf_counter() - t0
        stage.commit(
            f"utterances: {result.n_ok}\nskipped: {len(result.bad)}\nframes: {result.frames}\n"
            f"audio_seconds: {result.audio_seconds:.3f}\n",
        )
    except BaseException:
        stage.abort()
        raise
    return result
