"""Image-flow commands: ``prepare-image-data``, ``image-baseline``, ``train-image``,
``evaluate-image``, ``sample-image``."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from vocoflow.cli.main import CLIError

log = logging.getLogger("vocoflow.cli.images")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "prepare-image-data",
        help="raw image files (IDX, CIFAR-10 pickles) or sklearn digits -> DATA_DIR/{train,test}.pt",
        description="Read a data set's raw files and write DATA_DIR/train.pt, test.pt (uint8 "
        "(N, C, H, W) images and labels) and meta.json (written last: it marks a complete "
        "directory).",
    )
    p.add_argument("--dataset", required=True, choices=["fashion_mnist", "mnist", "cifar10", "digits"])
    p.add_argument("--src", default=None, help="directory with the raw files (IDX: "
                   "train-images-idx3-ubyte[.gz], ...; CIFAR-10: data_batch_1..5, test_batch); "
                   "not needed for digits")
    p.add_argument("--out-dir", required=True, help="prepared data directory")
    p.set_defaults(func=cmd_prepare)

    p = subparsers.add_parser(
        "image-baseline",
        help="bits/dim of the per-pixel independent categorical model (train histograms, add-one)",
    )
    p.add_argument("--data-dir", required=True, help="prepared data directory")
    p.add_argument("--smoothing", type=float, default=1.0, help="pseudo-count per value (default 1: add-one)")
    p.add_argument("--out", default=None, help="write the result as JSON here")
    p.set_defaults(func=cmd_baseline)

    p = subparsers.add_parser(
        "train-image",
        help="train an image flow (NICE, RealNVP, Glow, residual flow) with the shared trainer",
        description="Maximum-likelihood training in bits/dim with the Accelerate trainer "
        "(checkpoints, exact --resume, TensorBoard, loss.png). Writes OUT/model/ (model.pt, "
        "config.yaml) when done. For several GPUs run it under 'accelerate launch -m vocoflow.cli'.",
    )
    p.add_argument("--config", required=True, help="YAML config (model:, train:, data:, sample:)")
    p.add_argument("--data-dir", required=True, help="prepared data directory")
    add_training_args(p)
    _add_threads(p)
    p.set_defaults(func=cmd_train)

    p = subparsers.add_parser(
        "evaluate-image",
        help="test bits/dim of a trained image flow (uniform dequantisation, fixed noise seed)",
    )
    p.add_argument("--model-dir", required=True, help="OUT/model written by train-image")
    p.add_argument("--data-dir", required=True, help="prepared data directory")
    p.add_argument("--split", default="test", choices=["train", "test"])
    p.add_argument("--limit", type=int, default=None, help="only the first N images")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0, help="seed of the dequantisation noise")
    p.add_argument("--logdet", default=None, choices=["exact", "series", "unbiased"],
                   help="residual flows: log-det mode for evaluation (default: the model's "
                   "logdet_eval setting)")
    p.add_argument("--n-exact-terms", type=int, default=None, help="residual flows: always-computed series terms")
    p.add_argument("--n-series-terms", type=int, default=None, help="residual flows: terms of the truncated series")
    p.add_argument("--n-hutchinson", type=int, default=None, help="residual flows: trace probes")
    p.add_argument("--cpu", action="store_true")
    p.add_argument("--out", default=None, help="write the result as JSON here")
    p.add_argument("--no-progress", action="store_true")
    _add_threads(p)
    p.set_defaults(func=cmd_evaluate)

    p = subparsers.add_parser(
        "sample-image",
        help="sample grids at several temperatures and a latent-interpolation grid (PNG)",
    )
    p.add_argument("--model-dir", required=True, help="OUT/model written by train-image")
    p.add_argument("--out-dir", required=True, help="where the PNG files go")
    p.add_argument("--temperatures", default="0.5,0.7,0.85,1.0", help="comma-separated (default 0.5,0.7,0.85,1.0)")
    p.add_argument("--n", type=int, default=64, help="samples per grid (default 64)")
    p.add_argument("--nrow", type=int, default=8)
    p.add_argument("--scale", type=int, default=1, help="magnify each image (nearest neighbour)")
    p.add_argument("--data-dir", default=None, help="prepared data; with it, interpolate between test images")
    p.add_argument("--interp-pairs", type=int, default=4)
    p.add_argument("--interp-steps", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cpu", action="store_true")
    _add_threads(p)
    p.set_defaults(func=cmd_sample)


# ---------------------------------------------------------------------------------------------


def _add_threads(p) -> None:
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: torch's choice; "
                        "1 is much faster on an oversubscribed machine)")


def _load_yaml(path):
    from vocoflow.yamlfile import MissingYAMLFile, YAMLFileError, read_yaml_file

    path = Path(path)
    try:
        cfg = read_yaml_file(path)
    except MissingYAMLFile:
        raise CLIError(f"config {path} does not exist") from None
    except YAMLFileError as e:
        raise CLIError(str(e)) from None
    if not isinstance(cfg, dict):
        raise CLIError(f"{path}: expected a mapping with model:/train: sections")
    return cfg


def _set_threads(args) -> None:
    import torch

    n = getattr(args, "threads", None)
    if n is not None:
        if n < 1:
            raise CLIError("--threads must be >= 1")
        torch.set_num_threads(n)


def _device(cpu: bool):
    import torch

    return torch.device("cuda" if torch.cuda.is_available() and not cpu else "cpu")


def _load_model(model_dir, cpu):
    from vocoflow.images import load_image_flow

    path = Path(model_dir)
    if not (path / "model.pt").is_file() and not path.is_file():
        raise CLIError(f"{path}: no model.pt (train-image writes OUT/model/model.pt when it finishes)")
    return load_image_flow(path).to(_device(cpu))


def _write_json(path, obj):
    if path:
        from vocoflow.atomic import atomic_write_text

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def cmd_prepare(args) -> int:
    from vocoflow.images import ImageDataError, load_raw_dataset, save_prepared

    if args.dataset != "digits" and not args.src:
        raise CLIError(f"--src is required for {args.dataset}")
    try:
        splits = {s: load_raw_dataset(args.dataset, args.src, s) for s in ("train", "test")}
    except ImageDataError as e:
        raise CLIError(str(e)) from None
    meta = save_prepared(args.out_dir, args.dataset, splits)
    print(f"{args.out_dir}: {meta['splits']} images of shape {meta['image_shape']}")
    return 0


def cmd_baseline(args) -> int:
    from vocoflow.images import ImageDataError, categorical_baseline_bpd, load_prepared

    try:
        train, _ = load_prepared(args.data_dir, "train")
        test, _ = load_prepared(args.data_dir, "test")
    except ImageDataError as e:
        raise CLIError(str(e)) from None
    res = categorical_baseline_bpd(train, test, args.smoothing)
    res["model"] = "per-pixel categorical"
    print(json.dumps(res, indent=2))
    _write_json(args.out, res)
    return 0


def add_training_args(p) -> None:
    """The out-dir / resume / overwrite / steps options of the image-style training commands."""
    p.add_argument("--out-dir", required=True, help="experiment directory")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in OUT")
    p.add_argument("--overwrite", action="store_true",
                   help="delete the run already in OUT (checkpoints, log, model) and start afresh")
    p.add_argument("--cpu", action="store_true", help="train on the CPU even if a GPU is present")
    p.add_argument("--steps", type=int, default=None, help="override train.steps")
    p.add_argument("--no-progress", action="store_true")


def run_training(args, make_task, last_key: str, summary_key: str) -> int:
    """Build ``make_task(cfg, data_dir)`` from ``--config`` (errors as one line, before Accelerate
    starts), train it with the shared :class:`Trainer` and print a JSON summary whose
    ``summary_key`` is the last training record's ``last_key``."""
    from vocoflow.images import ImageDataError
    from vocoflow.train.trainer import Trainer, TrainingError

    _set_threads(args)
    cfg = _load_yaml(args.config)
    if args.steps is not None:
        cfg.setdefault("train", {})["steps"] = args.steps
    try:
        task = make_task(cfg, args.data_dir)
        _ = task.image_shape
        task.build_model()  # configuration errors surface here, before Accelerate starts
    except ImageDataError as e:
        raise CLIError(str(e)) from None
    except (ValueError, TypeError) as e:
        raise CLIError(f"{args.config}: {e}") from None
    t0 = time.time()
    try:
        summary = Trainer(task, task.train_cfg, args.out_dir, cpu=args.cpu, resume=args.resume,
                          progress=not args.no_progress, config_dump=cfg,
                          overwrite=args.overwrite).fit()
    except TrainingError as e:
        raise CLIError(str(e)) from None
    last = summary["history"][-1] if summary["history"] else {}
    print(json.dumps({"steps": summary["steps"], "finished": summary["finished"],
                      "seconds": round(time.time() - t0, 1), summary_key: last.get(last_key)}))
    return 0


def cmd_train(args) -> int:
    from vocoflow.train.image_task import ImageTask

    return run_training(args, ImageTask, "bpd", "last_train_bpd")


def cmd_evaluate(args) -> int:
    import torch

    from vocoflow.images import ImageDataError, load_prepared
    from vocoflow.train.image_task import evaluate_bpd

    _set_threads(args)
    model = _load_model(args.model_dir, args.cpu)
    try:
        images, _ = load_prepared(args.data_dir, args.split)
    except ImageDataError as e:
        raise CLIError(str(e)) from None
    if tuple(images.shape[1:]) != model.image_shape:
        raise CLIError(f"{args.data_dir}: images of shape {tuple(images.shape[1:])}, the model "
                       f"was trained on {model.image_shape}")
    if args.limit:
        images = images[: args.limit]
    model.eval()
    overrides = {k: v for k, v in {"logdet": args.logdet, "n_exact_terms": args.n_exact_terms,
                                   "n_series_terms": args.n_series_terms,
                                   "n_hutchinson": args.n_hutchinson}.items() if v is not None}
    if overrides:
        model.set_logdet(**overrides)
    blocks = model.residual_blocks()
    t0 = time.time()
    torch.manual_seed(args.seed)  # the residual flows' random probes / roulette
    res = evaluate_bpd(model, images, args.batch_size, seed=args.seed, progress=not args.no_progress)
    res.update({"split": args.split, "seconds": round(time.time() - t0, 1),
                "model_type": model.config.get("type"), "model_dir": str(args.model_dir),
                "parameters": sum(p.numel() for p in model.parameters()),
                "dequantization": model.config.get("dequantization", "uniform")})
    if blocks:
        b = blocks[0]
        res["logdet"] = {"mode": b.logdet_mode, "n_exact_terms": b.n_exact_terms,
                         "n_series_terms": b.n_series_terms, "n_hutchinson": b.n_hutchinson}
    if not res["finite"]:
        log.warning("non-finite bits/dim for some images")
    print(json.dumps(res, indent=2))
    _write_json(args.out, res)
    return 0


def cmd_sample(args) -> int:
    import torch

    from vocoflow.images import ImageDataError, load_prepared, make_grid, write_png

    try:
        temps = [float(t) for t in args.temperatures.split(",") if t.strip()]
    except ValueError:
        raise CLIError(f"--temperatures: expected comma-separated numbers, got {args.temperatures!r}") from None
    if not temps or args.n < 1:
        raise CLIError("need at least one temperature and --n >= 1")
    _set_threads(args)
    model = _load_model(args.model_dir, args.cpu).eval()
    device = next(model.parameters()).device
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for t in temps:
        g = torch.Generator(device=device).manual_seed(args.seed)
        imgs = model.sample_images(args.n, temperature=t, generator=g).cpu()
        path = out / f"samples_T{t:g}.png"
        write_png(path, make_grid(imgs, nrow=args.nrow, scale=args.scale))
        written.append(str(path))
    if args.data_dir:
        try:
            test, _ = load_prepared(args.data_dir, "test")
        except ImageDataError as e:
            raise CLIError(str(e)) from None
        g = torch.Generator().manual_seed(args.seed)
        pick = torch.randperm(test.shape[0], generator=g)[: 2 * args.interp_pairs]
        a, b = test[pick[0::2]], test[pick[1::2]]
        za, zb = model.encode(a.to(device)), model.encode(b.to(device))
        w = torch.linspace(0, 1, args.interp_steps, device=device, dtype=za.dtype)
        rows = []
        for i in range(a.shape[0]):
            z = torch.stack([(1 - s) * za[i] + s * zb[i] for s in w])
            rows.append(torch.cat([a[i:i + 1], model.decode(z).cpu(), b[i:i + 1]]))
        grid = make_grid(torch.cat(rows), nrow=args.interp_steps + 2, scale=args.scale)
        path = out / "interpolation.png"
        write_png(path, grid)
        written.append(str(path))
    print("\n".join(written))
    return 0
