"""``vocoflow evaluate``: objective metrics of generated audio against references."""

from __future__ import annotations

import os
from pathlib import Path

from .main import CLIError


def register(sub):
    p = sub.add_parser(
        "evaluate",
        help="PESQ, MCD, log-mel distance, F0 RMSE, V/UV error (and NLL) against references",
        description="Score generated audio against reference audio. Each --gen NAME=DIR is a "
                    "system whose DIR holds <utt>.wav files; references come from a Kaldi "
                    "wav.scp, a data dir, or a directory of <utt>.wav. Writes results.md, "
                    "results.json and spectrogram PNGs to --out-dir.")
    p.add_argument("--ref", required=True,
                   help="reference: data dir or dump dir (wav.scp of files or ark entries), "
                        "a wav.scp, or a directory of <utt>.wav")
    p.add_argument("--gen", action="append", default=[], metavar="NAME=DIR",
                   help="a system to score (repeatable)")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--sample-rate", type=int, default=None,
                   help="rate to compare at (default: from --feature-config, else 16000)")
    p.add_argument("--feature-config", help="MelConfig YAML (or a model dir) for the "
                                            "Griffin-Lim baseline")
    p.add_argument("--feature-preset", help="MelConfig preset name for the Griffin-Lim baseline")
    p.add_argument("--griffin-lim", action="store_true",
                   help="add a Griffin-Lim baseline synthesised from the references' mels")
    p.add_argument("--metrics", default="pesq,mcd,lmd,f0",
                   help="comma-separated subset of pesq,mcd,lmd,f0")
    p.add_argument("--nll", action="append", default=[], metavar="NAME=MODEL_DIR",
                   help="held-out NLL of a flow vocoder on --nll-dump (repeatable)")
    p.add_argument("--nll-dump", help="dump dir (features as the model expects) for --nll")
    p.add_argument("--n-jobs", type=int, default=1)
    p.add_argument("--plots", type=int, default=3, help="spectrogram figures to draw")
    p.set_defaults(func=run)


def _wav_map(spec: str) -> dict:
    """``{utt: wav path or ark entry}`` of a data dir, wav.scp or directory of wav files. The ids
    name output files (``griffin_lim/<utt>.wav``, ``spectrogram_<utt>.png``), so an id that is
    not a plain file name (:mod:`vocoflow.audio.utt_ids`) stops the command, naming its line."""
    from vocoflow.audio.utt_ids import id_problem

    path = Path(spec)
    if path.is_dir() and (path / "wav.scp").is_file():
        path = path / "wav.scp"
    if path.is_file():
        from vocoflow.audio.kaldi_io import resolve_entry

        out = {}
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split(maxsplit=1)
            if len(parts) != 2:
                raise CLIError(f"{path}:{n}: expected '<utt-id> <wav path or ark entry>'")
            problem = id_problem(parts[0])
            if problem:
                raise CLIError(f"{path}:{n}: utterance id {parts[0]!r} {problem}; ids name the output "
                               f"files and must be plain file names")
            if parts[1].rstrip().endswith("|"):
                raise CLIError(f"{path}:{n}: piped wav.scp entries are not supported here; "
                               "run `vocoflow preprocess` and use the dump directory")
            out[parts[0]] = resolve_entry(parts[1].strip(), str(path))
        return out
    if path.is_dir():
        out = {}
        for p in sorted(path.glob("*.wav")):
            if p.name.startswith("."):  # hidden files (e.g. a half-written .x.wav.tmp) are skipped
                continue
            problem = id_problem(p.stem)
            if problem:
                raise CLIError(f"{p}: utterance id {p.stem!r} (the file name without .wav) {problem}; "
                               f"rename the file")
            out[p.stem] = str(p)
        return out
    raise CLIError(f"{spec}: not a data dir, wav.scp or directory of wav files")


def _feature_config(args):
    from vocoflow.audio import MelConfig, get_preset

    if args.feature_preset:
        return get_preset(args.feature_preset)
    if args.feature_config:
        p = Path(args.feature_config)
        if p.is_dir():
            from vocoflow.yamlfile import YAMLFileError, read_yaml_file

            try:
                cfg = read_yaml_file(p / "config.yaml")
            except YAMLFileError as e:
                raise CLIError(str(e)) from None
            return MelConfig.from_dict(cfg["features"])
        return MelConfig.load(p)
    return None


def heldout_nll(model_dir: str, dump_dir: str, max_seconds: float | None = None) -> float | None:
    """Mean negative log-likelihood (nats per sample) of a flow vocoder on a dump directory
    whose features are what the model was trained on (normalised when it was), with the
    training ``sigma``. ``None`` for models whose density needs a sequential pass (IAF
    students)."""
    import torch

    from vocoflow.audio import AudioMelDataset
    from vocoflow.vocoders import VOCODER_MODELS, load

    voc = load(model_dir)
    choice = VOCODER_MODELS.of(voc.model)
    kind = choice.name
    if not choice.has("parallel_density"):
        print(f"{model_dir}: no parallel exact density for model type {kind!r}; NLL skipped")
        return None
    sigma = float((voc.config.get("train") or {}).get("sigma", 1.0))
    ds = AudioMelDataset(dump_dir, None)
    if (ds.config.n_mels, ds.config.hop_length) != (voc.n_mels, voc.hop_length):
        raise CLIError(f"{dump_dir}: features ({ds.config.n_mels} mels, hop "
                       f"{ds.config.hop_length}) do not match {model_dir}")
    total, samples = 0.0, 0
    with torch.no_grad():
        for i in range(len(ds)):
            item = ds[i]
            audio = torch.as_tensor(item["audio"])[None].to(voc.device, voc.dtype)
            mel = torch.as_tensor(item["mel"])[None].to(voc.device, voc.dtype)
            # a vocoder with an excitation is scored given the dump's tracked F0 (its density is
            # p(audio | mel, F0)); without an f0.scp, given the F0 it predicts from the mel
            f0 = item.get("f0") if voc.uses_excitation else None
            if f0 is not None:
                f0 = torch.as_tensor(f0)[None].to(voc.device, voc.dtype)
            if max_seconds:
                frames = voc.features.segment_frames(int(max_seconds * voc.sample_rate))
                audio, mel = audio[:, : voc.features.num_samples(frames)], mel[..., :frames]
                f0 = None if f0 is None else f0[:, :frames]
            kw = {"f0": f0} if voc.uses_excitation else {}
            total += -float(voc.model.log_prob(audio, mel, sigma, **kw).sum())
            samples += audio.shape[-1]
    return total / samples


def run(args) -> int:
    from vocoflow.eval.report import evaluate_systems

    refs = _wav_map(args.ref)
    if not refs:
        raise CLIError(f"{args.ref}: no reference utterances")
    systems = {}
    for spec in args.gen:
        if "=" not in spec:
            raise CLIError(f"--gen {spec}: expected NAME=DIR")
        name, d = spec.split("=", 1)
        systems[name] = _wav_map(d)
    feat = _feature_config(args)
    if args.griffin_lim and feat is None:
        raise CLIError("--griffin-lim needs --feature-config or --feature-preset")
    sr = args.sample_rate or (feat.sample_rate if feat else 16000)
    metrics = tuple(m.strip() for m in args.metrics.split(",") if m.strip())
    unknown = set(metrics) - {"pesq", "mcd", "lmd", "f0"}
    if unknown:
        raise CLIError(f"unknown metrics {sorted(unknown)}")
    extra = {}
    if args.nll:
        if not args.nll_dump:
            raise CLIError("--nll needs --nll-dump")
        for spec in args.nll:
            name, model_dir = spec.split("=", 1) if "=" in spec else (spec, spec)
            value = heldout_nll(model_dir, args.nll_dump)
            if value is not None:
                extra.setdefault(name, {})["nll"] = value
    if not systems and not args.griffin_lim:
        raise CLIError("nothing to evaluate: give --gen NAME=DIR and/or --griffin-lim")
    report = evaluate_systems(refs, systems, sr, args.out_dir,
                              griffin_lim=feat if args.griffin_lim else None, metrics=metrics,
                              n_jobs=args.n_jobs, n_plots=args.plots, extra=extra or None)
    print(Path(args.out_dir, "results.md").read_text())
    scored = sum(len(v) for v in report.per_utt.values())
    if report.failures:
        print(f"{len(report.failures)} utterance(s) could not be scored; see "
              f"{os.path.join(args.out_dir, 'results.md')}")
    if scored == 0:
        raise CLIError("no utterance could be scored")
    return 0
