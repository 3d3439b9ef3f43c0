"""The one training loop of vocoflow, built on Hugging Face Accelerate.

A *task* supplies the model, the data and the loss; the trainer supplies everything else:
one or several processes (``torchrun``/``accelerate launch``), mixed precision, gradient
accumulation and clipping, LR schedules, EMA, a guard against non-finite losses and gradients,
atomic checkpoints with exact resume, validation, TensorBoard, tqdm and a loss-curve PNG.

Task protocol (duck-typed)::

    build_model() -> nn.Module
    train_dataset() -> Dataset            # items are whatever collate() accepts
    collate(items) -> batch
    loss(model, batch, indices, step) -> (loss, {name: float})   # model may be DDP-wrapped
    data_init(model, batch, indices)      # optional: data-dependent init (ActNorm)
    validate(model) -> {name: float}      # optional, main process, model unwrapped, eval
    log_media(model, writer, step)        # optional, main process
    export(model, out_dir)                # optional: write the saved-model directory
    set_epoch(epoch)                      # optional

``indices`` are the global data-set indices of the batch items, so per-item randomness (e.g.
dequantisation noise) can be drawn independently of the number of processes.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, Dataset, Sampler

from vocoflow.atomic import atomic_write_text, replace_dir

from .trainer_config import TrainConfig

__all__ = ["Trainer", "TrainingError", "EMA", "EpochShuffleSampler", "find_latest_checkpoint"]

log = logging.getLogger("vocoflow.train")


class TrainingError(RuntimeError):
    """Training cannot continue (non-finite loss or gradients, bad data, bad resume)."""


class EpochShuffleSampler(Sampler):
    """A permutation of ``range(n)`` drawn from ``(seed, epoch)``: the same on every process
    and after a resume."""

    def __init__(self, n: int, seed: int):
        self.n = n
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self):
        return self.n


class _Indexed(Dataset):
    def __init__(self, ds):
        self.ds = ds

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        return i, self.ds[i]


class EMA:
    """Exponential moving average of the floating-point parameters (kept in float32)."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: p.detach().float().clone() for k, p in model.named_parameters()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for k, p in model.named_parameters():
            self.shadow[k].mul_(self.decay).add_(p.detach().float(), alpha=1 - self.decay)

    @torch.no_grad()
    def swap(self, model: nn.Module) -> None:
        """Exchange the model's parameters with the averages (call twice to restore)."""
        for k, p in model.named_parameters():
            tmp = p.detach().clone()
            p.copy_(self.shadow[k].to(p.dtype))
            self.shadow[k] = tmp.float()

    def state_dict(self):
        return {"decay": self.decay, "shadow": self.shadow}

    def load_state_dict(self, state):
        self.decay = state["decay"]
        self.shadow = {k: v.float() for k, v in state["shadow"].items()}


def _lr_lambda(cfg: TrainConfig):
    def f(step: int) -> float:
        warm = min(1.0, (step + 1) / cfg.lr_warmup_steps) if cfg.lr_warmup_steps else 1.0
        if cfg.lr_schedule == "constant":
            return warm
        if cfg.lr_schedule == "cosine":
            t = min(step / max(1, cfg.steps), 1.0)
            return warm * (cfg.lr_min_ratio + (1 - cfg.lr_min_ratio) * 0.5 * (1 + math.cos(math.pi * t)))
        if cfg.lr_schedule == "exponential":
            return warm * cfg.lr_decay ** (step / cfg.lr_decay_steps)
        return warm * cfg.lr_decay ** (step // cfg.lr_decay_steps)
    return f


def _all_finite(batch) -> bool:
    if torch.is_tensor(batch):
        return not batch.is_floating_point() or bool(torch.isfinite(batch).all())
    if isinstance(batch, dict):
        return all(_all_finite(v) for v in batch.values())
    if isinstance(batch, (list, tuple)):
        return all(_all_finite(v) for v in batch)
    return True


CKPT_PREFIX = "step_"


def find_latest_checkpoint(out_dir: str | Path) -> Path | None:
    """The newest complete checkpoint under ``out_dir/checkpoints`` (incomplete ones, still
    named ``.tmp_*``, are ignored)."""
    d = Path(out_dir) / "checkpoints"
    if not d.is_dir():
        return None
    done = sorted(p for p in d.iterdir() if p.is_dir() and p.name.startswith(CKPT_PREFIX)
                  and (p / "trainer_state.json").is_file())
    return done[-1] if done else None


class Trainer:
    """Run a task for ``cfg.steps`` optimizer steps. See the module docstring."""

    def __init__(self, task, cfg: TrainConfig, out_dir: str | Path, *, cpu: bool = False,
                 resume: bool = False, progress: bool = True, stop_after: int | None = None,
                 config_dump: dict | None = None):
        self.task = task
        self.cfg = cfg
        self.out_dir = Path(out_dir)
        self.cpu = cpu
        self.resume = resume
        self.progress = progress
        self.stop_after = stop_after  # simulate an interruption (tests) / budgeted runs
        self.config_dump = config_dump

    # -- helpers ---------------------------------------------------------------------------
    def _log_path(self):
        return self.out_dir / "train_log.jsonl"

    def _append_log(self, record: dict):
        with open(self._log_path(), "a") as f:
            f.write(json.dumps(record) + "\n")

    def _truncate_log(self, step: int):
        p = self._log_path()
        if not p.exists():
            return
        keep = [ln for ln in p.read_text().splitlines()
                if ln.strip() and json.loads(ln).get("step", 0) <= step]
        atomic_write_text(p, "".join(ln + "\n" for ln in keep))

    def _save_checkpoint(self, acc, step, epoch, batch_in_epoch, bad_steps):
        ckdir = self.out_dir / "checkpoints"
        final = ckdir / f"{CKPT_PREFIX}{step:08d}"
        tmp = ckdir / f".tmp_{CKPT_PREFIX}{step:08d}"
        if acc.is_main_process:
            ckdir.mkdir(parents=True, exist_ok=True)
            if tmp.exists():
                shutil.rmtree(tmp)
        acc.wait_for_everyone()
        acc.save_state(str(tmp))
        acc.wait_for_everyone()
        if acc.is_main_process:
            state = {"step": step, "epoch": epoch, "batch_in_epoch": batch_in_epoch,
                     "bad_steps": bad_steps, "num_processes": acc.num_processes,
                     "batch_size": self.cfg.batch_size, "time": time.time()}
            (tmp / "trainer_state.json").write_text(json.dumps(state, indent=2))
            # the whole directory is swapped into place (an old one of that step is removed after)
            replace_dir(tmp, final)
            old = sorted(p for p in ckdir.iterdir() if p.name.startswith(CKPT_PREFIX))
            for p in old[: max(0, len(old) - self.cfg.keep_checkpoints)]:
                shutil.rmtree(p, ignore_errors=True)
        acc.wait_for_everyone()

    def _plot_losses(self):
        from vocoflow.train.plots import plot_training_log

        try:
            plot_training_log(self._log_path(), self.out_dir / "loss.png")
        except Exception as e:  # a plot must never stop training
            log.warning("could not plot the loss curve: %s", e)

    # -- the loop --------------------------------------------------------------------------
    def fit(self) -> dict:
        from accelerate import Accelerator
        from accelerate.utils import DataLoaderConfiguration, set_seed

        cfg = self.cfg
        acc = Accelerator(cpu=self.cpu, mixed_precision=cfg.mixed_precision,
                          dataloader_config=DataLoaderConfiguration(split_batches=True))
        if cfg.batch_size % acc.num_processes:
            raise TrainingError(f"global batch_size {cfg.batch_size} is not divisible by the "
                                f"{acc.num_processes} processes")
        set_seed(cfg.seed)
        if acc.is_main_process:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            if self.config_dump is not None:
                import yaml

                (self.out_dir / "config.yaml").write_text(yaml.safe_dump(self.config_dump,
                                                                          sort_keys=False))
        acc.wait_for_everyone()

        task = self.task
        model = task.build_model()
        dataset = task.train_dataset()
        if len(dataset) < cfg.batch_size:
            raise TrainingError(f"the training set has {len(dataset)} items, fewer than one "
                                f"batch ({cfg.batch_size})")
        sampler = EpochShuffleSampler(len(dataset), cfg.seed)
        batch_sampler = BatchSampler(sampler, cfg.batch_size, drop_last=True)
        collate = task.collate

        def collate_indexed(items):
            return [i for i, _ in items], collate([x for _, x in items])

        loader = DataLoader(_Indexed(dataset), batch_sampler=batch_sampler,
                            collate_fn=collate_indexed, num_workers=cfg.num_workers)
        batches_per_epoch = len(batch_sampler)

        latest = find_latest_checkpoint(self.out_dir) if self.resume else None
        if self.resume and latest is None:
            log.info("--resume: no checkpoint in %s, starting from scratch", self.out_dir)
        if latest is None and hasattr(task, "data_init"):
            # the same first global batch on every process -> identical initialisation
            # (the data of the whole first optimizer step, accumulation included)
            sampler.set_epoch(0)
            first = iter(batch_sampler)
            idx = [i for _ in range(min(cfg.grad_accum, batches_per_epoch)) for i in next(first)]
            init_batch = collate([dataset[i] for i in idx])
            if not _all_finite(init_batch):
                raise TrainingError(f"non-finite values in the first batch (items {idx}); "
                                    "fix the data before training")
            task.data_init(model, init_batch, idx)

        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=cfg.betas,
                                      weight_decay=cfg.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg))
        model, optimizer, loader, scheduler = acc.prepare(model, optimizer, loader, scheduler)
        ema = EMA(acc.unwrap_model(model), cfg.ema_decay) if cfg.ema_decay else None
        if ema is not None:
            acc.register_for_checkpointing(ema)

        step, epoch, batch_in_epoch, bad_steps = 0, 0, 0, 0
        if latest is not None:
            state = json.loads((latest / "trainer_state.json").read_text())
            if state.get("batch_size") not in (None, cfg.batch_size):
                raise TrainingError(f"cannot resume {latest}: it was trained with global batch "
                                    f"{state['batch_size']}, the config now says {cfg.batch_size}")
            acc.load_state(str(latest))
            step, epoch = state["step"], state["epoch"]
            batch_in_epoch, bad_steps = state["batch_in_epoch"], state["bad_steps"]
            if acc.is_main_process:
                self._truncate_log(step)
                log.info("resumed from %s (step %d, epoch %d)", latest, step, epoch)
        elif acc.is_main_process and self._log_path().exists():
            self._log_path().unlink()

        writer = None
        if acc.is_main_process:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(self.out_dir / "tensorboard"), purge_step=step + 1)

        def epoch_iter(ep, skip):
            sampler.set_epoch(ep)
            if hasattr(task, "set_epoch"):
                task.set_epoch(ep)
            dl = acc.skip_first_batches(loader, skip) if skip else loader
            # Accelerate's loaders re-seed the sampler from their own iteration counter on
            # __iter__; set it, or a resumed run would replay the wrong epoch's order
            if hasattr(dl, "set_epoch"):
                dl.set_epoch(ep)
            return iter(dl)

        it = epoch_iter(epoch, batch_in_epoch)
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.steps, initial=step, desc="train", dynamic_ncols=True,
                   disable=not (self.progress and acc.is_main_process))
        params = [p for p in model.parameters() if p.requires_grad]
        media_every = cfg.media_every or cfg.validate_every
        history = []
        t_start = time.time()
        model.train()
        while step < cfg.steps:
            if self.stop_after is not None and step >= self.stop_after:
                break
            metrics_sum: dict[str, float] = {}
            skip_step = False
            for micro in range(cfg.grad_accum):
                try:
                    indices, batch = next(it)
                except StopIteration:
                    epoch, batch_in_epoch = epoch + 1, 0
                    it = epoch_iter(epoch, 0)
                    indices, batch = next(it)
                batch_in_epoch += 1
                last = micro == cfg.grad_accum - 1
                sync = nullcontext() if last else acc.no_sync(model)
                with sync:
                    with acc.autocast():
                        loss, metrics = task.loss(model, batch, indices, step)
                    bad = torch.tensor(0.0 if torch.isfinite(loss.detach()).all() else 1.0,
                                       device=acc.device)
                    if acc.reduce(bad, "sum").item() > 0:
                        msg = (f"non-finite loss ({loss.item()}) at step {step + 1} "
                               f"(epoch {epoch}, batch items {indices[:8]}...)")
                        if cfg.nan_policy == "stop" or bad_steps >= cfg.max_bad_steps:
                            raise TrainingError(msg + "; no checkpoint was written for it")
                        log.warning("%s: skipping this step", msg)
                        skip_step = True
                        continue
                    acc.backward(loss / cfg.grad_accum)
                for k, v in metrics.items():
                    metrics_sum[k] = metrics_sum.get(k, 0.0) + float(v) / cfg.grad_accum
            if not skip_step:
                if cfg.grad_clip:
                    gnorm = acc.clip_grad_norm_(params, cfg.grad_clip)
                else:
                    gnorm = torch.linalg.vector_norm(torch.stack(
                        [p.grad.detach().norm() for p in params if p.grad is not None]))
                gnorm = float(gnorm)
                if not math.isfinite(gnorm):
                    msg = f"non-finite gradient norm at step {step + 1} (epoch {epoch})"
                    if cfg.nan_policy == "stop" or bad_steps >= cfg.max_bad_steps:
                        raise TrainingError(msg + "; no checkpoint was written for it")
                    log.warning("%s: skipping this step", msg)
                    skip_step = True
            if skip_step:
                optimizer.zero_grad(set_to_none=True)
                bad_steps += 1
                continue
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            if ema is not None:
                ema.update(acc.unwrap_model(model))
            step += 1
            bar.update(1)

            # average the metrics over processes
            names = sorted(metrics_sum)
            if names:
                vals = torch.tensor([metrics_sum[k] for k in names], device=acc.device)
                vals = acc.reduce(vals, "mean").tolist()
                metrics_sum = dict(zip(names, vals))
            record = {"step": step, "epoch": epoch, "lr": scheduler.get_last_lr()[0],
                      "grad_norm": gnorm, **metrics_sum}
            history.append(record)
            if acc.is_main_process:
                self._append_log(record)
                if step % cfg.log_every == 0 or step == 1:
                    for k, v in record.items():
                        if k not in ("step", "epoch"):
                            writer.add_scalar(f"train/{k}", v, step)
                    bar.set_postfix({k: f"{v:.4g}" for k, v in metrics_sum.items()})

            if step % cfg.validate_every == 0 or step == cfg.steps:
                self._validate(acc, model, ema, writer, step, media=step % media_every == 0
                               or step == cfg.steps)
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                self._save_checkpoint(acc, step, epoch, batch_in_epoch, bad_steps)
        bar.close()

        if acc.is_main_process:
            self._plot_losses()
        finished = step >= cfg.steps
        if finished and hasattr(task, "export"):
            if acc.is_main_process:
                net = acc.unwrap_model(model)
                if ema is not None:
                    ema.swap(net)
                task.export(net, self.out_dir / "model")
                if ema is not None:
                    ema.swap(net)
            acc.wait_for_everyone()
        if writer is not None:
            writer.close()
        self.model = acc.unwrap_model(model)
        summary = {"steps": step, "finished": finished, "bad_steps": bad_steps,
                   "seconds": time.time() - t_start, "processes": acc.num_processes,
                   "history": history}
        acc.wait_for_everyone()
        acc.end_training()
        return summary

    def _validate(self, acc, model, ema, writer, step, media):
        if acc.is_main_process and hasattr(self.task, "validate"):
            net = acc.unwrap_model(model)
            if ema is not None:
                ema.swap(net)
            net.eval()
            with torch.no_grad():
                result = self.task.validate(net)
                if media and hasattr(self.task, "log_media"):
                    try:
                        self.task.log_media(net, writer, step)
                    except Exception as e:  # media are a convenience
                        log.warning("could not log media at step %d: %s", step, e)
            net.train()
            if ema is not None:
                ema.swap(net)
            for k, v in result.items():
                writer.add_scalar(f"dev/{k}", v, step)
            self._append_log({"step": step, **{f"dev_{k}": v for k, v in result.items()}})
            log.info("step %d: %s", step, ", ".join(f"dev {k} {v:.4f}" for k, v in result.items()))
            self._plot_losses()
        acc.wait_for_everyone()
