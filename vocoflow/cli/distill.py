"""``vocoflow distill``: probability density distillation of a saved teacher into an IAF student.

The teacher is a saved vocoder directory whose model type can teach (``can_teach`` in
:data:`~vocoflow.vocoders.VOCODER_MODELS`): a WaveNet teacher trained with ``vocoflow train``
(``model.type: wavenet_teacher``) or a flow such as WaveGlow. The student is
the config's ``model:`` (``type: iaf_student``); the losses are in ``train.loss``
(:mod:`vocoflow.train.distill_loss`). Training uses the same Accelerate trainer as
``vocoflow train`` (``--resume``, several processes with ``torchrun``/``accelerate launch``, the
non-finite guard, TensorBoard, ``loss.png``) and ends with an ordinary vocoder directory in
``OUT/model`` for ``vocoflow decode``, ``vocoflow benchmark`` and ``vocoflow.load``.
"""

from __future__ import annotations

import json
from pathlib import Path

from .main import CLIError
from .train import add_common_train_args, check_model_section, read_config_with_overrides, train_config


def register(sub):
    p = sub.add_parser("distill", help="distil a saved teacher vocoder into a parallel IAF "
                                       "student (Parallel WaveNet / ClariNet)")
    add_common_train_args(p)
    p.add_argument("--teacher", help="saved teacher vocoder directory (default: train.teacher)")
    p.add_argument("--train-dump", required=True, help="dump dir of the training set")
    p.add_argument("--dev-dump", help="dump dir of the dev set (validation KL/STFT, audio)")
    p.set_defaults(func=run)

    q = sub.add_parser("distill-score", help="KL(student || teacher) and STFT loss of students "
                                             "(and the teacher's samples) on a dump")
    q.add_argument("--teacher", required=True, help="saved teacher vocoder directory")
    q.add_argument("--student", action="append", default=[], metavar="NAME=DIR",
                   help="a saved student (repeatable)")
    q.add_argument("--dump", required=True, help="dump dir (features as the models expect)")
    q.add_argument("--teacher-sigma", type=float, default=None,
                   help="teacher temperature (default: the teacher's training sigma)")
    q.add_argument("--max-seconds", type=float, default=None, help="crop utterances")
    q.add_argument("--utterances", type=int, default=None, help="score the first N only")
    q.add_argument("--seed", type=int, default=0, help="noise seed (per utterance id)")
    q.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    q.add_argument("--json", help="write the results here")
    q.set_defaults(func=run_score)


def run_score(args) -> int:
    import torch

    from vocoflow.audio import MelConfig
    from vocoflow.train.distill_score import score_systems
    from vocoflow.train.distill_teacher import load_teacher
    from vocoflow.train.vocoder_task import ConfigError
    from vocoflow.vocoders import VocoderError, load

    if args.threads:
        torch.set_num_threads(args.threads)
    dump = Path(args.dump)
    if not (dump / "feats.scp").is_file():
        raise CLIError(f"{dump}: not a dump directory (no feats.scp)")
    stats = dump / "norm_stats.npz"
    try:
        features = MelConfig.load(dump / "feats_config.yaml")
        teacher, sigma = load_teacher(args.teacher, features, stats if stats.is_file() else None)
        students = {}
        for spec in args.student:
            if "=" not in spec:
                raise CLIError(f"--student {spec}: expected NAME=DIR")
            name, d = spec.split("=", 1)
            voc = load(d)
            if voc.features != features:
                raise CLIError(f"{d}: its features differ from {dump}'s")
            students[name] = voc.model
    except (ConfigError, VocoderError) as e:
        raise CLIError(str(e)) from None
    sigma = sigma if args.teacher_sigma is None else args.teacher_sigma
    res = score_systems(teacher, students, dump, teacher_sigma=sigma,
                        max_seconds=args.max_seconds, utterances=args.utterances, seed=args.seed)
    print(f"teacher {args.teacher} (sigma {sigma:g}), {dump}: "
          f"{next(iter(res.values()))['utterances']} utterances")
    print(f"{'system':16s} {'KL nats/sample':>15s} {'STFT loss':>10s} {'SC':>8s} {'log-mag':>8s}")
    for name, r in res.items():
        print(f"{name:16s} {r['kl']:15.4f} {r['stft']:10.4f} {r['stft_sc']:8.4f} "
              f"{r['stft_logmag']:8.4f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"teacher_sigma": sigma, "systems": res}, indent=2))
    return 0


def run(args) -> int:
    from vocoflow.train.distill_task import DistillTask
    from vocoflow.train.trainer import Trainer, TrainingError
    from vocoflow.train.vocoder_task import ConfigError

    config = read_config_with_overrides(args.config, args.set)
    teacher = args.teacher or (config.get("train") or {}).get("teacher")
    if not teacher:
        raise CLIError("no teacher: give --teacher DIR (or train.teacher in the config)")
    if not (Path(teacher) / "config.yaml").is_file():
        raise CLIError(f"{teacher}: not a saved vocoder directory (no config.yaml)")
    config.setdefault("train", {})["teacher"] = str(Path(teacher).resolve())
    cfg = train_config(config, args)
    for d in (args.train_dump, args.dev_dump):
        if d and not (Path(d) / "feats.scp").is_file():
            raise CLIError(f"{d}: not a dump directory (no feats.scp); run `vocoflow preprocess`")
    try:
        task = DistillTask(config, teacher, args.train_dump, args.dev_dump)
        check_model_section(config, task.features, args.config)
        trainer = Trainer(task, cfg, args.out_dir, cpu=args.cpu, resume=args.resume,
                          progress=not args.no_progress, config_dump=config,
                          overwrite=args.overwrite)
        summary = trainer.fit()
    except (ConfigError, TrainingError, FileNotFoundError) as e:
        raise CLIError(str(e)) from None
    hist = summary.pop("history")
    last = hist[-1] if hist else {}
    for k in ("loss", "kl", "stft"):
        summary[f"final_train_{k}"] = last.get(k)
    summary["model_dir"] = str(Path(args.out_dir) / "model") if summary["finished"] else None
    print(json.dumps(summary, indent=2))
    return 0
