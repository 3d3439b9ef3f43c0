"""``vocoflow decode``: features or audio -> waveforms with a saved vocoder.

Inputs (exactly one): ``--feats-scp`` (Kaldi/ESPnet ``feats.scp``), ``--npy-dir`` (alias
``--mel-dir``: one ``<utt>.npy`` or ``<utt>.pt`` per utterance, see below), ``--wav-scp`` or
``--wav-dir`` (analysis with the vocoder's own mel front end, then resynthesis; ``wav.scp``
values may be paths, ark entries or ``command |``). Output:
``OUT/<utt>.wav`` (16-bit PCM, written atomically: no half-written wav under that name, ever).

Utterance ids become file names, so they must be plain file names: no ``/`` or ``\\``, no
whitespace or control characters, no leading ``.``, at most 200 bytes (an scp line with such
an id stops the command before anything is written; in ``--npy-dir``/``--wav-dir`` hidden
files are skipped).

Orientation of ``.npy``/``.pt`` mel files: ``(n_mels, frames)`` or ``(1, n_mels, frames)`` (the
layout NVIDIA's and HiFi-GAN's scripts write; ``.pt``: one tensor saved with ``torch.save``,
read with ``weights_only=True``); ``(frames, n_mels)`` is accepted when only one axis has
``n_mels`` entries. A square ``n_mels x n_mels`` matrix is refused unless ``--mel-layout``
states its orientation. Kaldi ark features are ``(frames, n_mels)`` (Kaldi's convention).

Normalisation rule for feature inputs (``--feats-scp``/``--npy-dir``):

* default: the features are *raw* log-mels (as ``vocoflow preprocess`` writes to
  ``dump/*/raw``); they are normalised with the vocoder's ``stats.npz`` iff the vocoder was
  trained on normalised features (``normalize: true`` in its ``config.yaml``).
  ``--normalize-before`` states this explicitly (and fails for a vocoder without statistics);
* ``--no-normalize``: the features are already in the vocoder's input space (normalised for a
  ``normalize: true`` vocoder) and are used as they are.

Audio inputs always go through the vocoder's own front end, so the rule does not apply to them.
Every feature matrix is also checked for a log-base mismatch (a log10 mel given to an ln
vocoder or the reverse, see ``vocoflow.vocoders.api.log_base_mismatch``) and for a
normalisation mismatch (see ``vocoflow.vocoders.synthesis.looks_normalized``); ``--no-check``
turns both off.

Exit status: 0 when every utterance was written (a ``bad_utts`` left by an earlier run is
removed); 2 when some failed (every utterance is attempted, e.g. after a full disk for one of
them; the others are written; the failures are listed on stderr and in ``OUT/bad_utts``); 1
when nothing was produced or the command could not start (bad vocoder directory, bad
arguments, an utterance id that is not a plain file name, an out-dir that is a file or cannot
be written).
"""

from __future__ import annotations

import logging
import math
import os
import sys
import tempfile
from pathlib import Path

from vocoflow.cli.main import CLIError

log = logging.getLogger("vocoflow.cli.decode")

AUDIO_EXTS = (".wav", ".flac", ".ogg")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "decode",
        help="mel features (feats.scp / npy) or audio -> waveforms with a saved vocoder",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=_raw_formatter(),
    )
    p.add_argument("--model", required=True,
                   help="vocoder directory (config.yaml, model.pt or model.safetensors[, stats.npz]) or a "
                        "Hugging Face Hub repo id owner/name (cached; HF_HUB_OFFLINE=1: the cache only)")
    p.add_argument("--out-dir", required=True, help="output directory for <utt>.wav")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--feats-scp", help="Kaldi/ESPnet feats.scp of log-mel features")
    src.add_argument("--npy-dir", "--mel-dir", dest="npy_dir",
                     help="directory of <utt>.npy / <utt>.pt log-mel matrices ((n_mels, frames) or "
                          "(1, n_mels, frames); (frames, n_mels) when unambiguous)")
    src.add_argument("--wav-scp", help="Kaldi wav.scp (paths or 'command |'): analysis-resynthesis")
    src.add_argument("--wav-dir", help=f"directory of audio files ({', '.join(AUDIO_EXTS)}): analysis-resynthesis")
    norm = p.add_mutually_exclusive_group()
    norm.add_argument("--normalize-before", action="store_true",
                      help="features are raw log-mels: normalise them with the vocoder's stats "
                           "(the default for a normalize: true vocoder)")
    norm.add_argument("--no-normalize", action="store_true",
                      help="features are already in the vocoder's input space: use them as they are")
    p.add_argument("--mel-layout", choices=("auto", "mels-frames", "frames-mels"), default="auto",
                   help="orientation of .npy/.pt mel files: (n_mels, frames), (frames, n_mels), or "
                        "auto (default: whichever axis has n_mels entries; refuses square ones)")
    p.add_argument("--f0-scp", default=None,
                   help="vocoders with an excitation: Kaldi scp of F0 vectors (Hz per frame, 0 = unvoiced; "
                        "e.g. a dump's f0.scp or a TTS front end's) instead of the vocoder's own F0 prediction")
    p.add_argument("--batch-size", type=int, default=1, help="utterances synthesised together (default 1)")
    p.add_argument("--sigma", type=float, default=None,
                   help="latent standard deviation (default: the vocoder's, e.g. 0.6)")
    p.add_argument("--denoise", type=float, default=None,
                   help="bias denoiser strength (default: the vocoder's, e.g. 0)")
    p.add_argument("--chunk-frames", type=int, default=1024,
                   help="synthesise utterances longer than this many frames in overlapping chunks "
                        "(bounded memory, same audio up to rounding; default 1024, 0: never)")
    p.add_argument("--bf16", action="store_true",
                   help="conditioner networks in bfloat16 (faster on GPUs and AMX CPUs; slower on "
                        "CPUs without AMX)")
    p.add_argument("--seed", type=int, default=0,
                   help="noise seed; each utterance's noise depends only on (seed, utt id)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu; checked: cuda needs a GPU)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-check", action="store_true",
                   help="do not check inputs for a log-base or normalisation mismatch")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_decode)


def _raw_formatter():
    import argparse

    return argparse.RawDescriptionHelpFormatter


# ------------------------------------------------------------------------------------ inputs
def _list_dir(directory: str, exts: tuple[str, ...]) -> list[tuple[str, str]]:
    """``[(utt_id, path)]`` of the files in ``directory`` with one of ``exts`` (hidden files are
    skipped); an id that is not a plain file name or two files for one id stop the command."""
    from vocoflow.audio.utt_ids import id_problem

    if not os.path.isdir(directory):
        raise CLIError(f"{directory}: no such directory")
    items: dict[str, str] = {}
    for name in sorted(os.listdir(directory)):
        if name.startswith(".") or not name.lower().endswith(exts):
            continue
        path = os.path.join(directory, name)
        utt = Path(name).stem
        problem = id_problem(utt)
        if problem:
            raise CLIError(f"{path}: utterance id {utt!r} (the file name without its extension) "
                           f"{problem}; rename the file")
        if utt in items:
            raise CLIError(f"{directory}: two files for utterance {utt!r}: "
                           f"{os.path.basename(items[utt])} and {name}")
        items[utt] = path
    return sorted(items.items())


def _line_of(scp_path: str, key: str) -> str:
    """The line number of ``key`` in ``scp_path`` (as :func:`read_scp` splits lines)."""
    try:
        with open(scp_path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if line.strip().partition(" ")[0] == key:
                    return str(lineno)
    except OSError:
        pass
    return "?"


def check_ids(scp_path: str, ids) -> None:
    """Stop with a :class:`CLIError` naming the scp line of the first id that is not a plain
    file name (see :mod:`vocoflow.audio.utt_ids`): output files are named after the ids."""
    from vocoflow.audio.utt_ids import id_problem

    bad = [(u, p) for u in ids if (p := id_problem(u)) is not None]
    if bad:
        utt, problem = bad[0]
        more = f" ({len(bad) - 1} more such id(s) follow)" if len(bad) > 1 else ""
        raise CLIError(f"{scp_path}:{_line_of(scp_path, utt)}: utterance id {utt!r} {problem}; "
                       f"ids name the output files and must be plain file names{more}")


def _sources(args, voc):
    """``[(utt_id, loader)]`` where ``loader()`` returns ``(mel, is_audio)`` or raises."""
    from vocoflow.audio.kaldi_io import load_feat, read_scp, resolve_entry
    from vocoflow.audio.mel_files import MEL_FILE_EXTS, load_mel_file
    from vocoflow.audio.wav_scp import load_wav_entry

    def scp(path):
        try:
            entries = read_scp(path)
        except OSError as e:
            raise CLIError(f"{path}: cannot read ({e.strerror or e})") from None
        except ValueError as e:
            raise CLIError(str(e)) from None
        check_ids(path, entries)
        return entries

    n_mels = voc.n_mels
    layout = getattr(args, "mel_layout", "auto")
    if args.feats_scp:
        fd: dict = {}
        entries = scp(args.feats_scp)

        def load_scp_feat(value, u):
            entry = resolve_entry(value, args.feats_scp)
            if entry.lower().endswith(MEL_FILE_EXTS) and os.path.isfile(entry):
                return load_mel_file(entry, n_mels, layout, name=f"utterance {u}"), False
            return load_feat(value, n_mels, name=f"utterance {u}", fd_dict=fd,
                             scp_path=args.feats_scp).T, False

        return [(u, (lambda v=v, u=u: load_scp_feat(v, u))) for u, v in entries.items()], fd
    if args.npy_dir:
        return [(u, (lambda p=p, u=u: (load_mel_file(p, n_mels, layout, name=f"utterance {u}"), False)))
                for u, p in _list_dir(args.npy_dir, MEL_FILE_EXTS)], {}

    def load_wav(source, u):
        wav, _ = load_wav_entry(source, voc.sample_rate, name=f"{source.strip()} (utterance {u})")
        if len(wav) < voc.features.min_samples:
            raise ValueError(f"utterance {u}: audio of {len(wav)} samples is shorter than the front end's minimum "
                             f"({voc.features.min_samples} samples)")
        return voc.mel(wav).cpu().numpy(), True

    if args.wav_scp:
        return [(u, (lambda v=v, u=u: load_wav(v, u))) for u, v in scp(args.wav_scp).items()], {}
    return [(u, (lambda p=p, u=u: load_wav(p, u)))
            for u, p in _list_dir(args.wav_dir, AUDIO_EXTS)], {}


# ------------------------------------------------------------------------------------ outputs
def _os_reason(e: OSError) -> str:
    return e.strerror or str(e) or type(e).__name__


def _check_out_dir(out_dir: str) -> None:
    """Stop early when ``out_dir`` exists but is not a directory."""
    if os.path.lexists(out_dir) and not os.path.isdir(out_dir):
        raise CLIError(f"{out_dir}: --out-dir exists and is not a directory")


def _prepare_out_dir(out_dir: str) -> None:
    """Create ``out_dir`` and check that files can be created in it (one probe file, removed),
    so that a read-only directory is one error, not one failure per utterance."""
    _check_out_dir(out_dir)
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as e:
        raise CLIError(f"{out_dir}: cannot create the output directory ({_os_reason(e)})") from None
    try:
        fd, probe = tempfile.mkstemp(prefix=".vocoflow-decode-probe.", dir=out_dir)
    except OSError as e:
        raise CLIError(f"{out_dir}: cannot write to the output directory ({_os_reason(e)})") from None
    os.close(fd)
    os.unlink(probe)


def _write_bad_utts(out_dir: str, failures: list[tuple[str, str]]) -> str | None:
    """Write ``OUT/bad_utts`` (one ``<utt> <reason>`` line per failure) or, with no failures,
    remove a stale one; the problem as one line when that is impossible."""
    from vocoflow.atomic import atomic_write_text

    path = os.path.join(out_dir, "bad_utts")
    try:
        if failures:
            atomic_write_text(path, "".join(f"{u} {' '.join(reason.split())}\n" for u, reason in failures))
        elif os.path.lexists(path):
            os.unlink(path)
    except OSError as e:
        what = "write" if failures else "remove the stale"
        return f"{path}: cannot {what} bad_utts ({_os_reason(e)})"
    return None


# ------------------------------------------------------------------------------------ command
def cmd_decode(args) -> int:
    import torch

    from vocoflow.vocoders import Vocoder, VocoderError, noise_for

    if args.batch_size < 1:
        raise CLIError("--batch-size must be >= 1")
    if args.chunk_frames is not None and args.chunk_frames < 0:
        raise CLIError("--chunk-frames must be >= 0")
    for name, value in (("--sigma", args.sigma), ("--denoise", args.denoise)):
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise CLIError(f"{name} must be finite and >= 0, got {value}")
    _check_out_dir(args.out_dir)
    from .device import check_device

    check_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        voc = Vocoder.from_pretrained(args.model, device=args.device)
    except VocoderError as e:
        raise CLIError(str(e)) from None
    if args.normalize_before and not voc.normalize:
        raise CLIError(f"--normalize-before: {args.model} was trained on raw features "
                       f"(normalize: false); drop the option")
    # feature inputs: normalized=True means "already in the model's input space"
    normalized = bool(args.no_normalize and voc.normalize)

    from vocoflow.audio.io import save_wav

    sources, fds = _sources(args, voc)
    if not sources:
        raise CLIError("no utterances found in the input")
    f0_entries = None
    if args.f0_scp:
        from vocoflow.audio.kaldi_io import load_f0, read_scp

        if not voc.uses_excitation:
            raise CLIError(f"--f0-scp: {args.model} takes no F0 (it has no excitation)")
        try:
            f0_entries = read_scp(args.f0_scp)
        except (OSError, ValueError) as e:
            raise CLIError(f"--f0-scp: {e}") from None

    def f0_of(u, frames):
        if u not in f0_entries:
            raise ValueError(f"{args.f0_scp}: no F0 for utterance {u}")
        return load_f0(f0_entries[u], frames, name=f"{args.f0_scp}: utterance {u}", scp_path=args.f0_scp)
    _prepare_out_dir(args.out_dir)
    failures: list[tuple[str, str]] = []
    written = 0
    progress = None
    if not args.no_progress:
        from tqdm import tqdm

        progress = tqdm(total=len(sources), desc="decode", unit="utt", dynamic_ncols=True,
                        file=sys.stderr)

    pending: list[tuple[str, object]] = []

    def flush():
        nonlocal written
        if not pending:
            return
        f0s = None
        if f0_entries is not None:
            keep, f0s = [], []
            for u, m in pending:
                try:
                    f0s.append(f0_of(u, m.shape[-1]))
                    keep.append((u, m))
                except (OSError, ValueError) as e:
                    failures.append((u, f"bad F0: {e}"))
            pending[:] = keep
            if not pending:
                return
        ids = [u for u, _ in pending]
        mels = [m for _, m in pending]
        noises = [noise_for(u, args.seed, (m.shape[-1] * voc.hop_length,)) for u, m in pending]
        try:
            wavs = voc.synthesize_batch(mels, sigma=args.sigma, denoise=args.denoise,
                                        chunk_frames=args.chunk_frames or None, bf16=args.bf16,
                                        noises=noises, prepared=True, f0s=f0s)
        except (RuntimeError, ValueError) as e:  # e.g. out of memory: report the batch
            failures.extend((u, f"synthesis failed: {e}") for u in ids)
            wavs = None
        if wavs is not None:
            for u, w in zip(ids, wavs):
                target = os.path.join(args.out_dir, f"{u}.wav")
                if not bool(torch.isfinite(w).all()):
                    failures.append((u, "synthesised audio is not finite; nothing written"))
                    continue
                try:
                    save_wav(target, w.cpu().numpy(), voc.sample_rate)
                    written += 1
                except OSError as e:  # e.g. ENOSPC: record it and go on with the rest
                    failures.append((u, f"cannot write {target}: {_os_reason(e)}"))
        if progress is not None:
            progress.update(len(pending))
        pending.clear()

    try:
        for utt, loader in sources:
            try:
                mel, is_audio = loader()
                prepared = voc.prepare(mel, normalized=normalized and not is_audio,
                                       check=not args.no_check)[0]
            except (OSError, ValueError) as e:  # AudioError, VocoderError, FeatureShapeError
                msg = str(e)
                failures.append((utt, msg))
                if progress is not None:
                    progress.update(1)
                continue
            pending.append((utt, prepared))
            if len(pending) >= args.batch_size:
                flush()
        flush()
    finally:
        if progress is not None:
            progress.close()
        for f in fds.values():
            f.close()

    bad_utts_error = _write_bad_utts(args.out_dir, failures)
    if failures:
        listed = (f"also listed in {os.path.join(args.out_dir, 'bad_utts')}" if bad_utts_error is None
                  else "bad_utts could not be written")
        print(f"vocoflow decode: {len(failures)} of {len(sources)} utterance(s) failed ({listed}):",
              file=sys.stderr)
        for u, reason in failures:
            print(f"  {u}: {reason}", file=sys.stderr)
    if bad_utts_error is not None:
        print(f"vocoflow decode: error: {bad_utts_error}", file=sys.stderr)
    if written == 0:
        raise CLIError(f"nothing was produced in {args.out_dir}")
    print(f"{args.out_dir}: wrote {written} waveform(s) at {voc.sample_rate} Hz"
          + (f"; {len(failures)} failed" if failures else ""))
    return 2 if failures or bad_utts_error else 0
