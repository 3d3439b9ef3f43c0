"""Steganography commands (HiNet-style invertible image hiding): ``train-stego``,
``evaluate-stego``, ``hide`` and ``reveal``."""

from __future__ import annotations

import json
import pickle
import time
from pathlib import Path

from vocoflow.cli.images import _add_threads, _device, _set_threads, _write_json, add_training_args, run_training
from vocoflow.cli.main import CLIError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train-stego",
        help="train a HiNet-style hiding network (one image hidden in another) with the shared trainer",
        description="Guide (container vs cover), reconstruction (recovered vs secret, r replaced "
        "by N(0, I) noise) and low-frequency wavelet losses, trained with the Accelerate trainer "
        "(checkpoints, exact --resume, TensorBoard, loss.png). Writes OUT/model/ (model.pt, "
        "config.yaml) when done.",
    )
    p.add_argument("--config", required=True, help="YAML config (model:, loss:, train:, data:)")
    p.add_argument("--data-dir", required=True, help="prepared image directory (prepare-image-data)")
    add_training_args(p)
    _add_threads(p)
    p.set_defaults(func=cmd_train)

    p = subparsers.add_parser(
        "evaluate-stego",
        help="PSNR/SSIM of container vs cover and recovered vs secret on a prepared split",
        description="Image i hides image i+1 of the split; the container is rounded to 8 bits "
        "(as in a PNG) and revealed with r replaced by N(0, I) noise (drawn per pair from "
        "--seed). Optionally writes a PNG grid: per row cover, container, secret, recovered "
        "and 10x |container - cover|.",
    )
    p.add_argument("--model-dir", required=True, help="OUT/model written by train-stego")
    p.add_argument("--data-dir", required=True, help="prepared image directory")
    p.add_argument("--split", default="test", choices=["train", "test"])
    p.add_argument("--limit", type=int, default=None, help="only the first N pairs")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0, help="seed of the reveal noise")
    p.add_argument("--float-container", action="store_true",
                   help="reveal from the unrounded container (HiNet's evaluation) instead of its 8-bit PNG values")
    p.add_argument("--grid", default=None, help="write the PNG grid here")
    p.add_argument("--grid-pairs", type=int, default=8, help="rows of the grid (default 8)")
    p.add_argument("--scale", type=int, default=2, help="magnify the grid's images (default 2)")
    p.add_argument("--out", default=None, help="write the result as JSON here")
    p.add_argument("--cpu", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    _add_threads(p)
    p.set_defaults(func=cmd_evaluate)

    p = subparsers.add_parser(
        "hide",
        help="hide the SECRET PNG in the COVER PNG: write the container PNG",
        description="COVER and SECRET must have the same size (even width and height) and the "
        "model's channels (grey or RGB). The container is rounded to 8 bits; the lost "
        "information r is discarded (reveal replaces it by noise).",
    )
    p.add_argument("cover", help="cover image (PNG)")
    p.add_argument("secret", help="secret image (PNG)")
    p.add_argument("out", help="container image to write (PNG)")
    p.add_argument("--model-dir", required=True, help="OUT/model written by train-stego")
    p.add_argument("--cpu", action="store_true")
    p.set_defaults(func=cmd_hide)

    p = subparsers.add_parser(
        "reveal",
        help="recover the hidden secret from a CONTAINER PNG: write it as a PNG",
        description="Runs the hiding network backwards from the container with r replaced by a "
        "sample of N(0, I) (drawn from --seed).",
    )
    p.add_argument("container", help="container image (PNG) written by vocoflow hide")
    p.add_argument("out", help="recovered secret to write (PNG)")
    p.add_argument("--model-dir", required=True, help="OUT/model written by train-stego")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise that replaces r")
    p.add_argument("--cpu", action="store_true")
    p.set_defaults(func=cmd_reveal)


# ---------------------------------------------------------------------------------------------


def _load_model(model_dir, cpu):
    from vocoflow.steganography import load_hiding_network

    path = Path(model_dir)
    if not (path / "model.pt").is_file() and not path.is_file():
        raise CLIError(f"{path}: no model.pt (train-stego writes OUT/model/model.pt when it finishes)")
    try:
        model = load_hiding_network(path)
    except (ValueError, RuntimeError, KeyError, TypeError, EOFError, OSError,
            pickle.UnpicklingError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CLIError(f"{path}: not a hiding network ({first})") from None
    return model.to(_device(cpu))


def _read_image(path, what, model):
    from vocoflow.images.png import read_png

    path = Path(path)
    if not path.is_file():
        raise CLIError(f"{what} {path}: no such file")
    try:
        image = read_png(path)
    except ValueError as e:
        raise CLIError(f"{what} {e}") from None
    c, h, w = image.shape
    if c != model.channels:
        kind = {1: "grey", 3: "RGB"}
        raise CLIError(f"{what} {path}: a {kind.get(c, c)} image, the model hides "
                       f"{kind.get(model.channels, model.channels)} images")
    if h % 2 or w % 2:
        raise CLIError(f"{what} {path}: {w}x{h} pixels; width and height must be even (Haar wavelet)")
    return image


def _write_image(path, image_u8):
    from vocoflow.images.png import write_png

    path = Path(path)
    if path.parent and not path.parent.is_dir():
        raise CLIError(f"{path}: the directory {path.parent} does not exist")
    write_png(path, image_u8)


def cmd_train(args) -> int:
    from vocoflow.train.stego_task import StegoTask

    return run_training(args, StegoTask, "total", "last_train_loss")


def cmd_evaluate(args) -> int:
    from vocoflow.images import ImageDataError, load_prepared, make_grid, write_png
    from vocoflow.steganography import evaluate_pairs, grid_panels

    _set_threads(args)
    model = _load_model(args.model_dir, args.cpu)
    try:
        images, _ = load_prepared(args.data_dir, args.split)
    except ImageDataError as e:
        raise CLIError(str(e)) from None
    c, h, w = images.shape[1:]
    if c != model.channels or h % 2 or w % 2 or min(h, w) < 11:
        raise CLIError(f"{args.data_dir}: {args.split} images of shape {tuple(images.shape[1:])}; "
                       f"the model hides {model.channels}-channel images with even sides "
                       "(and SSIM needs at least 11x11)")
    if args.limit is not None and args.limit < 1:
        raise CLIError("--limit must be >= 1")
    t0 = time.time()
    res = evaluate_pairs(model, images, args.limit, args.batch_size, args.seed,
                         quantized=not args.float_container, progress=not args.no_progress)
    res.update({"split": args.split, "seconds": round(time.time() - t0, 1),
                "model_dir": str(args.model_dir), "model": model.config,
                "parameters": sum(p.numel() for p in model.parameters())})
    if args.grid:
        panels = grid_panels(model, images, args.grid_pairs, args.seed)
        grid = Path(args.grid)
        grid.parent.mkdir(parents=True, exist_ok=True)
        write_png(grid, make_grid(panels, nrow=5, scale=args.scale))
        res["grid"] = str(grid)
    print(json.dumps(res, indent=2))
    _write_json(args.out, res)
    return 0


def cmd_hide(args) -> int:
    from vocoflow.steganography import quantize

    model = _load_model(args.model_dir, args.cpu)
    cover = _read_image(args.cover, "cover", model)
    secret = _read_image(args.secret, "secret", model)
    if cover.shape != secret.shape:
        raise CLIError(f"cover {args.cover} is {cover.shape[2]}x{cover.shape[1]} but secret "
                       f"{args.secret} is {secret.shape[2]}x{secret.shape[1]}: they must be the same size")
    import torch

    p = next(model.parameters())
    with torch.no_grad():
        container, _ = model.hide(cover[None].to(p.device, p.dtype) / 255.0,
                                  secret[None].to(p.device, p.dtype) / 255.0)
    _write_image(args.out, quantize(container[0]).cpu())
    print(f"{args.out}: container of {args.cover} with {args.secret} hidden")
    return 0


def cmd_reveal(args) -> int:
    import torch

    from vocoflow.steganography import quantize

    model = _load_model(args.model_dir, args.cpu)
    container = _read_image(args.container, "container", model)
    p = next(model.parameters())
    g = torch.Generator().manual_seed(args.seed)
    noise = torch.randn((1, *model.lost_shape(tuple(container.shape))), generator=g, dtype=p.dtype)
    with torch.no_grad():
        secret, _ = model.reveal(container[None].to(p.device, p.dtype) / 255.0, noise.to(p.device))
    _write_image(args.out, quantize(secret[0]).cpu())
    print(f"{args.out}: secret revealed from {args.container}")
    return 0
