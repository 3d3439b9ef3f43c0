"""The image-flow task for :class:`~vocoflow.train.trainer.Trainer`: maximum likelihood in
bits per dimension on uniformly (or variationally) dequantised 8-bit images.

Config (one YAML file, see ``configs/images/*.yaml``)::

    model: {type: glow, levels: 2, steps: 8, hidden: 64, ...}   # vocoflow.images.build_image_flow
    train: {steps: ..., batch_size: ..., lr: ..., ...}          # TrainConfig
    data:  {limit_train: null, validate_items: 1000, eval_batch_size: 256}
    sample: {temperatures: [0.5, 0.7, 0.85, 1.0], n: 64, interpolation_pairs: 4, interpolation_steps: 8}
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch

from vocoflow.images import (
    ImageDataset,
    build_image_flow,
    load_prepared,
    make_grid,
    uniform_noise,
)
from vocoflow.train.trainer_config import TrainConfig

__all__ = ["ImageTask", "split_config", "evaluate_bpd"]

log = logging.getLogger("vocoflow.train.image")

DATA_DEFAULTS = {"limit_train": None, "validate_items": 1000, "eval_batch_size": 256}


def split_config(config: dict) -> tuple[dict, TrainConfig, dict]:
    """``(model, TrainConfig, data)`` sections of an image config, with defaults."""
    if not isinstance(config, dict) or "model" not in config:
        raise ValueError("an image config needs a 'model:' section")
    unknown = set(config) - {"model", "train", "data", "sample", "eval", "description"}
    if unknown:
        raise ValueError(f"unknown config section(s): {sorted(unknown)}")
    data = dict(DATA_DEFAULTS)
    data.update(config.get("data") or {})
    return dict(config["model"]), TrainConfig.from_dict(config.get("train")), data


def _unwrap(model):
    return model.module if hasattr(model, "module") else model


@torch.no_grad()
def evaluate_bpd(model, images: torch.Tensor, batch_size: int = 256, seed: int = 0,
                 device=None, progress: bool = False) -> dict:
    """Mean bits/dim of uint8 ``images`` under ``model`` (uniform noise drawn per item from
    ``seed``; ``model`` in whatever mode the caller chose), with the standard error over items.

    For a model with augmented noise (``model.augmented``, e.g. ``denseflow``) the value is the
    negative augmented ELBO, an upper bound on the bits/dim; its noise comes from torch's
    generator seeded with ``seed`` inside this call (the caller's generator state is restored),
    and the result says ``"augmented": true``."""
    device = torch.device(device or next(model.parameters()).device)
    forked = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=forked):
        torch.manual_seed(seed)
        res = _evaluate_bpd(model, images, batch_size, seed, device, progress)
    if getattr(_unwrap(model), "augmented", False):
        res["augmented"] = True
    return res


def _evaluate_bpd(model, images, batch_size, seed, device, progress) -> dict:
    dtype = next(model.parameters()).dtype
    values = []
    starts = range(0, images.shape[0], batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="evaluate", dynamic_ncols=True)
    for s in starts:
        x = images[s:s + batch_size]
        idx = range(s, s + x.shape[0])
        noise = uniform_noise(tuple(x.shape[1:]), idx, seed, step=0, dtype=dtype)
        values.append(model.bits_per_dim(x.to(device), noise.to(device)).double().cpu())
    v = torch.cat(values)
    return {"bpd": float(v.mean()), "bpd_stderr": float(v.std() / math.sqrt(len(v))) if len(v) > 1 else 0.0,
            "n": int(len(v)), "finite": bool(torch.isfinite(v).all())}


class PreparedImages:
    """The data side of the image tasks: ``self.data_dir`` (``vocoflow prepare-image-data``) and
    ``self.data_cfg`` (``limit_train``), read lazily; ``image_shape`` is the training images'."""

    _train = None
    _test = None

    # -- data ---------------------------------------------------------------------------------
    def _train_images(self):
        if self._train is None:
            images, _ = load_prepared(self.data_dir, "train")
            self._train = ImageDataset(images, self.data_cfg.get("limit_train"))
        return self._train

    def _test_images(self):
        if self._test is None:
            if (self.data_dir / "test.pt").is_file():
                self._test = load_prepared(self.data_dir, "test")[0]
            else:
                self._test = False
        return self._test

    @property
    def image_shape(self):
        return self._train_images().image_shape


class ImageTask(PreparedImages):
    """Train an :class:`~vocoflow.images.ImageFlow` on a prepared image directory
    (``vocoflow prepare-image-data``: ``train.pt``, ``test.pt``, ``meta.json``)."""

    def __init__(self, config: dict, data_dir: str | Path):
        self.config = config
        self.model_cfg, self.train_cfg, self.data_cfg = split_config(config)
        self.data_dir = Path(data_dir)
        self.seed = self.train_cfg.seed

    # -- trainer protocol ---------------------------------------------------------------------
    def build_model(self):
        torch.manual_seed(self.seed)
        return build_image_flow(self.model_cfg, self.image_shape)

    def train_dataset(self):
        return self._train_images()

    def collate(self, items):
        return torch.stack(items)

    def _noise(self, batch, indices, step):
        return uniform_noise(tuple(batch.shape[1:]), indices, self.seed, step + 1).to(batch.device)

    def data_init(self, model, batch, indices):
        model.train()
        with torch.no_grad():
            model(batch, noise=self._noise(batch, indices, -1))

    def loss(self, model, batch, indices, step):
        net = _unwrap(model)
        z, logdet = model(batch, noise=self._noise(batch, indices, step))
        log_prob = net.base.log_prob(z) + logdet
        bpd = -log_prob.mean() / (net.dims * math.log(2.0))
        return bpd, {"bpd": bpd.item()}

    def validate(self, model):
        test = self._test_images()
        n = int(self.data_cfg.get("validate_items") or 0)
        if test is False or n <= 0:
            return {}
        device = next(model.parameters()).device
        res = evaluate_bpd(model, test[:n], int(self.data_cfg["eval_batch_size"]),
                           seed=self.seed + 1, device=device)
        return {"bpd": res["bpd"]}

    def log_media(self, model, writer, step):
        temps = (self.config.get("sample") or {}).get("temperatures") or [0.7]
        g = torch.Generator(device=next(model.parameters()).device).manual_seed(self.seed)
        for t in temps[-2:]:
            imgs = model.sample_images(16, temperature=float(t), generator=g).cpu()
            writer.add_image(f"samples/T{t}", make_grid(imgs, nrow=4).float() / 255.0, step)

    def export(self, model, out_dir):
        import yaml

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        model.save(out_dir / "model.pt")
        (out_dir / "config.yaml").write_text(yaml.safe_dump(self.config, sort_keys=False))
        log.info("exported %s", out_dir)
