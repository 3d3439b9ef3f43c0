"""Data commands: ``validate-data-dir``, ``preprocess``, ``compute-stats``, ``normalize``."""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys

from vocoflow.cli.main import CLIError

log = logging.getLogger("vocoflow.cli.data")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "validate-data-dir",
        help="check a Kaldi data directory (wav.scp, segments, utt2spk, spk2utt, text)",
        description="Check a Kaldi data directory; every problem names its file and line. "
        "Exit status 1 if there is any error (warnings alone pass).",
    )
    p.add_argument("data_dir", metavar="DIR", nargs="+")
    p.add_argument("--no-audio-check", action="store_true",
                   help="do not read audio headers (unreadable or truncated audio and segment ends "
                        "are then not checked)")
    p.add_argument("--run-pipes", action="store_true",
                   help="run 'command |' entries to check that they produce readable audio (and "
                        "segment ends against it)")
    p.add_argument("--max-errors", type=int, default=100, help="print at most this many issues (default 100)")
    p.set_defaults(func=cmd_validate)

    p = subparsers.add_parser(
        "preprocess",
        help="data dir -> dump dir: log-mel features and aligned audio (Kaldi ark/scp)",
        description="Extract log-mel features and the matching (hop-aligned, 16-bit) audio of "
        "every utterance. Bad utterances are skipped and listed in DUMP/bad_utts; the exit "
        "status is non-zero when none is usable. DUMP/.done marks a complete dump.",
    )
    p.add_argument("--data-dir", required=True, help="Kaldi data directory (wav.scp [segments utt2spk spk2utt text])")
    p.add_argument("--dump-dir", required=True, help="output directory")
    _feature_args(p)
    p.add_argument("--n-jobs", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--strict", action="store_true", help="refuse audio at another sample rate instead of resampling it")
    p.add_argument("--trim-db", type=float, default=None,
                   help="trim leading/trailing audio quieter than this many dB below the peak "
                        "(librosa.effects.trim); off by default")
    p.add_argument("--pitch", choices=("none", "dio", "harvest"), default="none",
                   help="also track F0 per frame (WORLD DIO+StoneMask or Harvest via pyworld) into DUMP/f0.scp; "
                        "needed by models with an excitation (default none)")
    p.add_argument("--f0-floor", type=float, default=60.0, help="lowest F0 the tracker reports, Hz (default 60)")
    p.add_argument("--f0-ceil", type=float, default=500.0, help="highest F0 the tracker reports, Hz (default 500)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_preprocess)

    p = subparsers.add_parser(
        "compute-stats",
        help="per-bin mean and scale of the features of a dump dir (stats.npz)",
    )
    p.add_argument("--dump-dir", required=True, help="dump directory of the training set")
    p.add_argument("--out", default=None, help="output .npz (default DUMP/stats.npz)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_compute_stats)

    p = subparsers.add_parser(
        "normalize",
        help="write a dump dir with features normalised by stats (audio index copied)",
    )
    p.add_argument("--dump-dir", required=True, help="input dump directory")
    p.add_argument("--stats", required=True, help="stats.npz from compute-stats")
    p.add_argument("--out-dir", required=True, help="output dump directory")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_normalize)


def _feature_args(p: argparse.ArgumentParser) -> None:
    # the preset names are checked when the command runs (importing torch here would slow
    # every vocoflow command down)
    p.add_argument("--feature-preset", default=None, metavar="NAME",
                   help="named MelConfig preset: tacotron2, pwg, hifigan, waveglow, asterisk16k")
    p.add_argument(
        "--config",
        default=None,
        help="YAML with MelConfig fields (flat, optionally with 'preset: NAME'), or a model "
        "config with them under 'features:'; overrides --feature-preset",
    )


def load_feature_config(preset: str | None, config_path: str | None):
    """The MelConfig chosen by ``--feature-preset`` and/or ``--config``."""
    from vocoflow.audio.mel import MelConfig, get_preset

    if preset is None and config_path is None:
        raise CLIError("give --feature-preset NAME or --config YAML")
    data: dict = {}
    if config_path is not None:
        from vocoflow.yamlfile import YAMLFileError, read_yaml_file

        try:
            loaded = read_yaml_file(config_path) or {}
        except YAMLFileError as e:
            raise CLIError(str(e)) from None
        if not isinstance(loaded, dict):
            raise CLIError(f"{config_path}: expected a mapping of MelConfig fields")
        data = loaded.get("features", loaded) if isinstance(loaded.get("features"), dict) else loaded
        data = dict(data)
    try:
        if preset is not None and "preset" not in data:
            data = {**get_preset(preset).to_dict(), **data}
        return MelConfig.from_dict(data)
    except (TypeError, ValueError) as e:
        raise CLIError(f"{config_path or preset}: bad feature configuration: {e}") from None


def _progress(args, desc: str):
    if getattr(args, "no_progress", False):
        return None
    from tqdm import tqdm

    return functools.partial(tqdm, desc=desc, unit="utt", dynamic_ncols=True, file=sys.stderr)


def cmd_validate(args) -> int:
    from vocoflow.audio.datadir import DataDir

    failed = []
    for path in args.data_dir:
        dd = DataDir(path, check_audio=not args.no_audio_check, run_pipes=args.run_pipes)
        for issue in dd.issues[: args.max_errors]:
            print(issue)
        if len(dd.issues) > args.max_errors:
            print(f"... and {len(dd.issues) - args.max_errors} more issue(s)")
        n_err, n_warn = len(dd.errors), len(dd.warnings)
        if n_err:
            failed.append(f"{path}: {n_err} error(s), {n_warn} warning(s)")
            continue
        utts = dd.utterances()
        speakers = {u.speaker for u in utts if u.speaker}
        print(f"{path}: OK: {len(utts)} utterance(s), {len(speakers)} speaker(s), {n_warn} warning(s)")
    if failed:
        raise CLIError("; ".join(failed))
    return 0


def cmd_preprocess(args) -> int:
    from vocoflow.audio.datadir import DataDirError
    from vocoflow.audio.dump import preprocess

    config = load_feature_config(args.feature_preset, args.config)
    if args.n_jobs < 1:
        raise CLIError("--n-jobs must be >= 1")
    if not os.path.isdir(args.data_dir):
        raise CLIError(f"{args.data_dir}: no such data directory")
    pitch = None
    if args.pitch != "none":
        from vocoflow.audio.pitch import PitchConfig

        try:
            pitch = PitchConfig(args.pitch, args.f0_floor, args.f0_ceil)
        except ValueError as e:
            raise CLIError(f"--pitch: {e}") from None
    try:
        result = preprocess(
            args.data_dir, args.dump_dir, config, n_jobs=args.n_jobs, strict=args.strict,
            trim_db=args.trim_db, progress=_progress(args, "preprocess"), pitch=pitch,
        )
    except DataDirError as e:
        raise CLIError(f"{args.data_dir}: invalid data directory:\n{e}") from None
    except OSError as e:  # e.g. a full disk: the staged new dump is removed, an old one kept
        raise CLIError(f"{e} (nothing in {args.dump_dir} was replaced)") from None
    if result.bad:
        print(f"skipped {len(result.bad)} bad utterance(s) (listed in {os.path.join(args.dump_dir, 'bad_utts')}):",
              file=sys.stderr)
        for utt, reason in result.bad:
            print(f"  {utt}: {reason}", file=sys.stderr)
    if result.n_ok == 0:
        raise CLIError(f"{args.data_dir}: no usable utterance; nothing written to {args.dump_dir}")
    print(
        f"{args.dump_dir}: {result.n_ok} utterance(s), {result.audio_seconds / 60:.2f} min of audio, "
        f"{result.frames} frames in {result.elapsed:.1f} s ({result.speed:.1f} s of audio per second)"
    )
    return 0


def cmd_compute_stats(args) -> int:
    from vocoflow.audio.stats import compute_stats

    out = args.out or os.path.join(args.dump_dir, "stats.npz")
    try:
        stats = compute_stats(args.dump_dir, out, progress=_progress(args, "compute-stats"))
    except (OSError, ValueError) as e:
        raise CLIError(str(e)) from None
    print(f"{out}: {stats.count} frames, {stats.mean.shape[0]} bins")
    return 0


def cmd_normalize(args) -> int:
    from vocoflow.audio.stats import normalize

    try:
        n = normalize(args.dump_dir, args.stats, args.out_dir, progress=_progress(args, "normalize"))
    except (OSError, ValueError) as e:
        raise CLIError(str(e)) from None
    print(f"{args.out_dir}: {n} utterance(s) normalised")
    return 0
