"""``vocoflow decode``: features or audio -> waveforms with a saved vocoder.

Inputs (exactly one): ``--feats-scp`` (Kaldi/ESPnet ``feats.scp``), ``--npy-dir`` (one
``<utt>.npy`` per utterance, ``(n_mels, frames)`` or ``(frames, n_mels)``), ``--wav-scp`` or
``--wav-dir`` (analysis with the vocoder's own mel front end, then resynthesis; ``wav.scp``
values may be paths, ark entries or ``command |``). Output:
``OUT/<utt>.wav`` (16-bit PCM, written atomically).

Normalisation rule for feature inputs (``--feats-scp``/``--npy-dir``):

* default: the features are *raw* log-mels (as ``vocoflow preprocess`` writes to
  ``dump/*/raw``); they are normalised with the vocoder's ``stats.npz`` iff the vocoder was
  trained on normalised features (``normalize: true`` in its ``config.yaml``).
  ``--normalize-before`` states this explicitly (and fails for a vocoder without statistics);
* ``--no-normalize``: the features are already in the vocoder's input space (normalised for a
  ``normalize: true`` vocoder) and are used as they are.

Audio inputs always go through the vocoder's own front end, so the rule does not apply to them.
Every feature matrix is also checked for a normalisation mismatch (see
``vocoflow.vocoders.synthesis.looks_normalized``); ``--no-check`` turns that off.

Exit status: 0 when every utterance was written; 2 when some failed (the others are written;
the failures are listed on stderr and in ``OUT/bad_utts``); 1 when nothing was produced or the
command could not start (bad vocoder directory, bad arguments).
"""

from __future__ import annotations

import logging
import os
import sys
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
    p.add_argument("--model", required=True, help="vocoder directory (config.yaml, model.pt[, stats.npz])")
    p.add_argument("--out-dir", required=True, help="output directory for <utt>.wav")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--feats-scp", help="Kaldi/ESPnet feats.scp of log-mel features")
    src.add_argument("--npy-dir", help="directory of <utt>.npy log-mel matrices")
    src.add_argument("--wav-scp", help="Kaldi wav.scp (paths or 'command |'): analysis-resynthesis")
    src.add_argument("--wav-dir", help=f"directory of audio files ({', '.join(AUDIO_EXTS)}): analysis-resynthesis")
    norm = p.add_mutually_exclusive_group()
    norm.add_argument("--normalize-before", action="store_true",
                      help="features are raw log-mels: normalise them with the vocoder's stats "
                           "(the default for a normalize: true vocoder)")
    norm.add_argument("--no-normalize", action="store_true",
                      help="features are already in the vocoder's input space: use them as they are")
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
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-check", action="store_true", help="do not check inputs for a normalisation mismatch")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_decode)


def _raw_formatter():
    import argparse

    return argparse.RawDescriptionHelpFormatter


# ------------------------------------------------------------------------------------ inputs
def _list_dir(directory: str, exts: tuple[str, ...]) -> list[tuple[str, str]]:
    if not os.path.isdir(directory):
        raise CLIError(f"{directory}: no such directory")
    items = sorted((Path(f).stem, os.path.join(directory, f)) for f in os.listdir(directory)
                   if f.lower().endswith(exts))
    return items


def _sources(args, voc):
    """``[(utt_id, loader)]`` where ``loader()`` returns ``(mel, is_audio)`` or raises."""
    import numpy as np

    from vocoflow.audio.kaldi_io import as_frames_by_mels, load_feat, read_scp
    from vocoflow.audio.wav_scp import load_wav_entry

    def scp(path):
        try:
            return read_scp(path)
        except OSError as e:
            raise CLIError(f"{path}: cannot read ({e.strerror or e})") from None
        except ValueError as e:
            raise CLIError(str(e)) from None

    n_mels = voc.n_mels
    if args.feats_scp:
        fd: dict = {}
        entries = scp(args.feats_scp)
        return [(u, (lambda v=v, u=u: (load_feat(v, n_mels, name=f"utterance {u}", fd_dict=fd,
                                                 scp_path=args.feats_scp).T, False)))
                for u, v in entries.items()], fd
    if args.npy_dir:
        def load_npy(path, u):
            try:
                arr = np.load(path, allow_pickle=False)
            except (OSError, ValueError) as e:
                raise ValueError(f"cannot read {path} ({e})") from None
            return as_frames_by_mels(arr, n_mels, name=f"utterance {u}").T, False

        return [(u, (lambda p=p, u=u: load_npy(p, u)))
                for u, p in _list_dir(args.npy_dir, (".npy",))], {}

    def load_wav(source, u):
        wav, _ = load_wav_entry(source, voc.sample_rate, name=f"{source.strip()} (utterance {u})")
        if len(wav) < voc.hop_length:
            raise ValueError(f"utterance {u}: audio shorter than one hop ({voc.hop_length} samples)")
        return voc.mel(wav).cpu().numpy(), True

    if args.wav_scp:
        return [(u, (lambda v=v, u=u: load_wav(v, u))) for u, v in scp(args.wav_scp).items()], {}
    return [(u, (lambda p=p, u=u: load_wav(p, u)))
            for u, p in _list_dir(args.wav_dir, AUDIO_EXTS)], {}


# ------------------------------------------------------------------------------------ command
def cmd_decode(args) -> int:
    import torch

    from vocoflow.audio.io import save_wav
    from vocoflow.vocoders import Vocoder, VocoderError, noise_for

    if args.batch_size < 1:
        raise CLIError("--batch-size must be >= 1")
    if args.chunk_frames is not None and args.chunk_frames < 0:
        raise CLIError("--chunk-frames must be >= 0")
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
    os.makedirs(args.out_dir, exist_ok=True)
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
                try:
                    if not bool(torch.isfinite(w).all()):
                        raise ValueError("synthesised audio is not finite")
                    save_wav(os.path.join(args.out_dir, f"{u}.wav"), w.cpu().numpy(), voc.sample_rate)
                    written += 1
                except (OSError, ValueError) as e:
                    failures.append((u, f"cannot write output: {e}"))
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

    if failures:
        from vocoflow.atomic import atomic_write_text

        atomic_write_text(os.path.join(args.out_dir, "bad_utts"),
                          "".join(f"{u} {reason}\n" for u, reason in failures))
        print(f"vocoflow decode: {len(failures)} of {len(sources)} utterance(s) failed "
              f"(also listed in {os.path.join(args.out_dir, 'bad_utts')}):", file=sys.stderr)
        for u, reason in failures:
            print(f"  {u}: {reason}", file=sys.stderr)
    if written == 0:
        raise CLIError(f"nothing was produced in {args.out_dir}")
    print(f"{args.out_dir}: wrote {written} waveform(s) at {voc.sample_rate} Hz"
          + (f"; {len(failures)} failed" if failures else ""))
    return 2 if failures else 0
