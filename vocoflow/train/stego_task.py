"""The steganography task for :class:`~vocoflow.train.trainer.Trainer`: a HiNet-style hiding
network trained with the guide, reconstruction and low-frequency wavelet losses.

Config (one YAML file, see ``configs/steganography/*.yaml``)::

    model: {type: hinet, blocks: 8, hidden: 64, n_layers: 3, kernel_size: 3, clamp: 2.0}
    loss:  {guide: 1.0, reconstruction: 5.0, low_frequency: 1.0}   # HiNet's weights
    train: {steps: ..., batch_size: ..., lr: ..., ...}               # TrainConfig
    data:  {limit_train: null, validate_items: 512, eval_batch_size: 256}

Each training batch of ``batch_size`` images (even) makes ``batch_size / 2`` pairs: the second
half hides the first half (HiNet's pairing); the noise that replaces ``r`` in the reveal pass is
drawn from ``train.seed`` and the step, so a resumed run draws what an uninterrupted one does.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from vocoflow.images import make_grid
from vocoflow.steganography import (
    LossWeights,
    build_hiding_network,
    evaluate_pairs,
    grid_panels,
    hiding_losses,
)
from vocoflow.train.image_task import PreparedImages
from vocoflow.train.trainer_config import TrainConfig

__all__ = ["StegoTask", "split_stego_config"]

log = logging.getLogger("vocoflow.train.stego")

DATA_DEFAULTS = {"limit_train": None, "validate_items": 512, "eval_batch_size": 256}


def split_stego_config(config: dict) -> tuple[dict, LossWeights, TrainConfig, dict]:
    """``(model, LossWeights, TrainConfig, data)`` of a steganography config, with defaults."""
    if not isinstance(config, dict) or "model" not in config:
        raise ValueError("a steganography config needs a 'model:' section")
    unknown = set(config) - {"model", "loss", "train", "data", "description"}
    if unknown:
        raise ValueError(f"unknown config section(s): {sorted(unknown)}")
    data = dict(DATA_DEFAULTS)
    data.update(config.get("data") or {})
    unknown = set(data) - set(DATA_DEFAULTS)
    if unknown:
        raise ValueError(f"data: unknown option(s) {sorted(unknown)} (known: {sorted(DATA_DEFAULTS)})")
    train = TrainConfig.from_dict(config.get("train"))
    if train.batch_size < 2 or train.batch_size % 2:
        raise ValueError(f"train.batch_size must be even (cover/secret pairs), got {train.batch_size}")
    if train.extra:
        raise ValueError(f"train: unknown option(s) {sorted(train.extra)}")
    return dict(config["model"] or {}), LossWeights.from_dict(config.get("loss")), train, data


def _unwrap(model):
    return model.module if hasattr(model, "module") else model


class StegoTask(PreparedImages):
    """Train a :class:`~vocoflow.steganography.HidingNetwork` on a prepared image directory
    (``vocoflow prepare-image-data``: ``train.pt``, ``test.pt``, ``meta.json``)."""

    def __init__(self, config: dict, data_dir: str | Path):
        self.config = config
        self.model_cfg, self.weights, self.train_cfg, self.data_cfg = split_stego_config(config)
        self.data_dir = Path(data_dir)
        self.seed = self.train_cfg.seed

    # -- trainer protocol ---------------------------------------------------------------------
    def build_model(self):
        c, h, w = self.image_shape
        cfg = dict(self.model_cfg)
        if cfg.get("channels", c) != c:
            raise ValueError(f"model.channels is {cfg['channels']} but the images have {c} channel(s)")
        if h % 2 or w % 2:
            raise ValueError(f"images of {h}x{w}: height and width must be even (Haar wavelet)")
        cfg["channels"] = c
        torch.manual_seed(self.seed)
        return build_hiding_network(cfg)

    def train_dataset(self):
        return self._train_images()

    def collate(self, items):
        return torch.stack(items)

    def _noise(self, net, n, step, device, dtype):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        shape = (n, *net.lost_shape(self.image_shape))
        return torch.randn(shape, generator=g, dtype=dtype).to(device)

    def loss(self, model, batch, indices, step):
        net = _unwrap(model)
        p = next(net.parameters())
        x = batch.to(p.dtype) / 255.0
        half = x.shape[0] // 2
        secret, cover = x[:half], x[half:2 * half]
        out = model(cover, secret, self._noise(net, half, step, x.device, x.dtype))
        terms = hiding_losses(out, cover, secret, self.weights)
        return terms["total"], {k: float(v.detach()) for k, v in terms.items()}

    def validate(self, model):
        test = self._test_images()
        n = int(self.data_cfg.get("validate_items") or 0)
        if test is False or n <= 0:
            return {}
        res = evaluate_pairs(model, test[: n + 1], batch_size=int(self.data_cfg["eval_batch_size"]),
                             seed=self.seed + 1)
        return {k: res[k] for k in ("psnr_container", "psnr_recovered", "ssim_container",
                                    "ssim_recovered")}

    def log_media(self, model, writer, step):
        test = self._test_images()
        if test is False:
            return
        panels = grid_panels(model, test[:5], n_pairs=4, seed=self.seed + 1)
        writer.add_image("hiding/cover_container_secret_recovered_10xresidual",
                         make_grid(panels, nrow=5).float() / 255.0, step)

    def export(self, model, out_dir):
        import yaml

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        model.save(out_dir / "model.pt")
        (out_dir / "config.yaml").write_text(yaml.safe_dump(self.config, sort_keys=False))
        log.info("exported %s", out_dir)
