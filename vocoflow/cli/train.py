"""``vocoflow train``: maximum-likelihood training of a flow vocoder with Accelerate.

Runs in one process as is, or in several with ``torchrun --nproc_per_node N`` /
``accelerate launch --multi_gpu --num_processes N`` (the global batch is split over them).
"""

from __future__ import annotations

import json
from pathlib import Path

from .main import CLIError


def register(sub):
    p = sub.add_parser("train", help="train a flow vocoder (maximum likelihood, Accelerate)")
    add_common_train_args(p)
    p.add_argument("--train-dump", required=True, help="dump dir of the training set")
    p.add_argument("--dev-dump", help="dump dir of the dev set (validation NLL, TensorBoard audio)")
    p.add_argument("--init-from", metavar="DIR",
                   help="fine-tune: start from the weights of this vocoder directory (new optimizer; "
                        "the config's model/features must match DIR's, missing sections come from it)")
    p.add_argument("--train-feats-scp", metavar="FILE",
                   help="train on these mels (e.g. TTS-predicted, ground-truth aligned; raw log-mel "
                        "feats.scp keyed by utterance id) with the audio of --train-dump")
    p.set_defaults(func=run)


def add_common_train_args(p):
    p.add_argument("--config", required=True, help="YAML with features/model/train sections")
    p.add_argument("--out-dir", required=True, help="experiment directory")
    p.add_argument("--resume", action="store_true",
                   help="continue from the newest intact checkpoint in --out-dir (exactly; the "
                        "config's values are in effect from there on)")
    p.add_argument("--overwrite", action="store_true",
                   help="delete the run already in --out-dir (checkpoints, log, model, "
                        "TensorBoard) and start afresh; without it such an out-dir is refused")
    p.add_argument("--cpu", action="store_true", help="never use a GPU")
    p.add_argument("--mixed-precision", choices=["no", "bf16", "fp16"],
                   help="override train.mixed_precision")
    p.add_argument("--steps", type=int, help="override train.steps")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value, e.g. --set train.lr=5e-4 (YAML value syntax)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar")


def read_config_with_overrides(path: str, overrides: list[str]) -> dict:
    """The ``--config`` YAML as a dict, with the ``--set SECTION.KEY=VALUE`` overrides applied
    (not checked further: each task checks the sections it uses)."""
    import yaml

    from vocoflow.yamlfile import MissingYAMLFile, YAMLFileError, read_yaml_file

    try:
        config = read_yaml_file(path) or {}
    except MissingYAMLFile:
        raise CLIError(f"{path}: no such config file") from None
    except YAMLFileError as e:
        raise CLIError(str(e)) from None
    if not isinstance(config, dict):
        raise CLIError(f"{path}: the top level must be a mapping")
    for item in overrides:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise CLIError(f"--set {item}: expected SECTION.KEY=VALUE")
        key, value = item.split("=", 1)
        section, name = key.split(".", 1)
        if not isinstance(config.setdefault(section, {}), dict):
            raise CLIError(f"{path}: '{section}:' must be a mapping, got "
                           f"{type(config[section]).__name__} {config[section]!r}")
        config[section][name] = yaml.safe_load(value)
    from vocoflow.vocoders.config import check_config_layout

    try:
        check_config_layout(config, path, required=())
    except ValueError as e:
        raise CLIError(str(e)) from None
    return config


def check_model_section(config: dict, features, path: str) -> None:
    """The ``model:`` section must build a model config for ``features`` (the dump's)."""
    from vocoflow.vocoders.config import model_config_from
    from vocoflow.vocoders.models import VOCODER_MODELS

    if VOCODER_MODELS.find((config.get("model") or {}).get("type", VOCODER_MODELS.default)) is None:
        return  # the task names the types it trains
    try:
        model_config_from({**config, "model": config.get("model") or {}, "features": features})
    except (TypeError, ValueError) as e:
        raise CLIError(f"{path}: model: {e}") from None


def train_config(config: dict, args):
    from vocoflow.train.trainer_config import TrainConfig

    tr = dict(config.get("train") or {})
    if args.steps is not None:
        tr["steps"] = args.steps
    if args.mixed_precision is not None:
        tr["mixed_precision"] = args.mixed_precision
    config["train"] = tr
    try:
        return TrainConfig.from_dict(tr)
    except (TypeError, ValueError) as e:
        raise CLIError(f"{args.config}: {e}") from None


def run(args) -> int:
    from vocoflow.train.teacher_task import TeacherTask
    from vocoflow.train.trainer import Trainer, TrainingError
    from vocoflow.train.vocoder_task import ConfigError, VocoderTask
    from vocoflow.vocoders import VOCODER_MODELS

    config = read_config_with_overrides(args.config, args.set)
    cfg = train_config(config, args)
    for d in (args.train_dump, args.dev_dump):
        if d and not (Path(d) / "feats.scp").is_file():
            raise CLIError(f"{d}: not a dump directory (no feats.scp); run `vocoflow preprocess`")
    try:
        init_from = getattr(args, "init_from", None)
        if init_from:  # fine-tuning: the sections the config lacks come from DIR
            from vocoflow.train.finetune import config_with_init

            config = config_with_init(config, init_from)
        # the model type's training task; VocoderTask reports a type it cannot train
        choice = VOCODER_MODELS.find((config.get("model") or {}).get("type"))
        task_cls = TeacherTask if choice is not None and choice.task == "teacher" else VocoderTask
        task = task_cls(config, args.train_dump, args.dev_dump,
                        train_feats_scp=getattr(args, "train_feats_scp", None))
        if task.train_feats_scp:
            task.train_dataset()  # check the mels before anything is written
        if init_from:
            from vocoflow.train.finetune import FineTuneTask, check_init_from

            task = FineTuneTask(task, check_init_from(init_from, config, task))
        check_model_section(config, task.features, args.config)
        trainer = Trainer(task, cfg, args.out_dir, cpu=args.cpu, resume=args.resume,
                          progress=not args.no_progress, config_dump=config,
                          overwrite=args.overwrite)
        summary = trainer.fit()
    except (ConfigError, TrainingError, FileNotFoundError, ValueError, KeyError) as e:
        raise CLIError(str(e)) from None
    hist = summary.pop("history")
    summary["final_train_nll"] = hist[-1].get("nll") if hist else None
    print(json.dumps(summary, indent=2))
    return 0
