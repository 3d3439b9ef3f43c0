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

import errno
import fcntl
import hashlib
import json
import logging
import math
import os
import shutil
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, Dataset, Sampler

from vocoflow.atomic import atomic_write_text, replace_dir

from .trainer_config import TrainConfig

__all__ = ["Trainer", "TrainingError", "EMA", "EpochShuffleSampler", "find_latest_checkpoint",
           "find_checkpoint", "verify_checkpoint", "CorruptCheckpoint", "LOCK_NAME"]

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


def _describe_items(dataset, indices, limit: int = 16) -> str:
    """The batch items for an error message: their utterance ids when the data set has them
    (``dataset.utt_ids``), and which of them hold non-finite values."""
    indices = [int(i) for i in indices]
    ids = getattr(dataset, "utt_ids", None)
    name = (lambda i: str(ids[i])) if ids is not None else str
    kind = "utterances" if ids is not None else "batch items"
    more = f" (+{len(indices) - limit} more)" if len(indices) > limit else ""
    text = f"{kind} {', '.join(name(i) for i in indices[:limit])}{more}"
    try:
        bad = [i for i in indices if not _all_finite(dataset[i])]
    except Exception:  # the data set cannot say: the batch is named anyway
        bad = []
    if bad:
        text += f"; non-finite input values in {', '.join(name(i) for i in bad)}"
    return text


CKPT_PREFIX = "step_"
STATE_NAME = "trainer_state.json"   # written last into a checkpoint: its manifest (sha256 per file)
EMA_NAME = "ema.safetensors"
LOCK_NAME = ".train.lock"            # fcntl lock held by the training that writes the out-dir
# what makes an out-dir hold a run, and what --overwrite removes
RUN_ENTRIES = ("checkpoints", "train_log.jsonl", "model")
OVERWRITE_ENTRIES = ("checkpoints", "train_log.jsonl", "model", "tensorboard", "loss.png", "config.yaml")
_STATE_KEYS = ("step", "epoch", "batch_in_epoch", "bad_steps")


class CorruptCheckpoint(TrainingError):
    """A checkpoint that fails verification; the message names the file and what is wrong."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _manifest(directory: Path) -> dict:
    """``{relative path: {"bytes", "sha256"}}`` of every file under ``directory``."""
    out = {}
    for p in sorted(directory.rglob("*")):
        if p.is_file():
            out[p.relative_to(directory).as_posix()] = {"bytes": p.stat().st_size, "sha256": _sha256(p)}
    return out


def verify_checkpoint(path: str | Path) -> dict:
    """The trainer state of checkpoint ``path`` after checking it against its manifest (each
    file's size and sha256, stored in ``trainer_state.json`` when it was saved). Raises
    :class:`CorruptCheckpoint` naming the file that is missing, truncated or altered.
    Checkpoints written before manifests existed are accepted unchecked."""
    path = Path(path)
    sp = path / STATE_NAME
    if not sp.is_file():
        raise CorruptCheckpoint(f"{sp}: missing")
    try:
        state = json.loads(sp.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CorruptCheckpoint(f"{sp}: unreadable or truncated ({e})") from None
    if not isinstance(state, dict) or any(k not in state for k in _STATE_KEYS):
        missing = [k for k in _STATE_KEYS if not isinstance(state, dict) or k not in state]
        raise CorruptCheckpoint(f"{sp}: short or malformed (no {', '.join(missing)})")
    files = state.get("files")
    if files is None:
        return state
    if not isinstance(files, dict):
        raise CorruptCheckpoint(f"{sp}: malformed 'files' manifest")
    for rel, meta in files.items():
        f = path / rel
        if Path(rel).is_absolute() or ".." in Path(rel).parts or not isinstance(meta, dict):
            raise CorruptCheckpoint(f"{sp}: malformed manifest entry {rel!r}")
        if not f.is_file():
            raise CorruptCheckpoint(f"{f}: missing")
        size = f.stat().st_size
        if size != meta.get("bytes"):
            raise CorruptCheckpoint(f"{f}: {size} bytes, the manifest says {meta.get('bytes')} (truncated?)")
        if _sha256(f) != meta.get("sha256"):
            raise CorruptCheckpoint(f"{f}: sha256 differs from the manifest (the file is corrupt)")
    return state


def _checkpoint_dirs(out_dir: str | Path) -> list[Path]:
    d = Path(out_dir) / "checkpoints"
    if not d.is_dir():
        return []
    return sorted(p for p in d.iterdir() if p.is_dir() and p.name.startswith(CKPT_PREFIX))


def find_checkpoint(out_dir: str | Path):
    """``(path, state, skipped)``: the newest checkpoint under ``out_dir/checkpoints`` that
    passes :func:`verify_checkpoint` (``None, None`` when there is none) and the newer ones that
    failed it, as ``[(path, reason)]``. Incomplete checkpoints, still named ``.tmp_*``, are not
    considered."""
    skipped = []
    for p in reversed(_checkpoint_dirs(out_dir)):
        try:
            return p, verify_checkpoint(p), skipped
        except CorruptCheckpoint as e:
            skipped.append((p, str(e)))
    return None, None, skipped


def find_latest_checkpoint(out_dir: str | Path) -> Path | None:
    """The newest intact checkpoint under ``out_dir/checkpoints`` (see :func:`find_checkpoint`)."""
    return find_checkpoint(out_dir)[0]


def _acquire_lock(out_dir: Path):
    """An exclusive ``flock`` on ``out_dir/.train.lock`` (released when the returned file is
    closed or the process ends, however it ends)."""
    path = out_dir / LOCK_NAME
    f = open(path, "a+", encoding="utf-8")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        f.close()
        if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            raise TrainingError(f"{out_dir}: another training is writing to this directory "
                                f"(it holds the lock {path}); wait for it to end or use another "
                                f"--out-dir") from None
        raise TrainingError(f"{path}: cannot lock it ({e.strerror})") from None
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f


def _flat(d, prefix=""):
    out = {}
    for k, v in (d or {}).items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _config_changes(old: dict, new: dict) -> list[str]:
    """``"key: old -> new"`` for each value that differs between two config documents."""
    a, b = _flat(old), _flat(new)
    missing = object()
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k, missing), b.get(k, missing)
        if va != vb:
            out.append(f"{k}: {'(unset)' if va is missing else va!r} -> {'(unset)' if vb is missing else vb!r}")
    return out


class Trainer:
    """Run a task for ``cfg.steps`` optimizer steps. See the module docstring."""

    def __init__(self, task, cfg: TrainConfig, out_dir: str | Path, *, cpu: bool = False,
                 resume: bool = False, progress: bool = True, stop_after: int | None = None,
                 config_dump: dict | None = None, overwrite: bool = False):
        self.task = task
        self.cfg = cfg
        self.out_dir = Path(out_dir)
        self.cpu = cpu
        self.resume = resume
        self.overwrite = overwrite
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
        """Keep the log records up to ``step`` (those of the resumed checkpoint). A torn last
        line (a kill during a write) is dropped with a warning; a bad line before it is an
        error naming the file and the line."""
        p = self._log_path()
        if not p.exists():
            return
        try:
            lines = p.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise TrainingError(f"{p}: unreadable training log ({e})") from None
        keep = []
        for n, ln in enumerate(lines, 1):
            if not ln.strip():
                continue
            try:
                rec = json.loads(ln)
                if not isinstance(rec, dict):
                    raise ValueError("not a JSON object")
            except ValueError as e:
                if all(not rest.strip() for rest in lines[n:]):
                    log.warning("%s: line %d is torn (%s); dropped it", p, n, e)
                    continue
                raise TrainingError(f"{p}: line {n}: not a JSON record ({e}); fix or remove "
                                    "the line to resume") from None
            if rec.get("step", 0) <= step:
                keep.append(ln)
        atomic_write_text(p, "".join(ln + "\n" for ln in keep))

    def _save_checkpoint(self, acc, step, epoch, batch_in_epoch, bad_steps, ema=None):
        ckdir = self.out_dir / "checkpoints"
        final = ckdir / f"{CKPT_PREFIX}{step:08d}"
        tmp = ckdir / f".tmp_{CKPT_PREFIX}{step:08d}"
        if acc.is_main_process:
            ckdir.mkdir(parents=True, exist_ok=True)
            if tmp.exists():
                shutil.rmtree(tmp)
        acc.wait_for_everyone()
        try:
            acc.save_state(str(tmp))
            acc.wait_for_everyone()
            if acc.is_main_process:
                if ema is not None:
                    from safetensors.torch import save_file

                    save_file({k: v.detach().cpu().contiguous() for k, v in ema.shadow.items()},
                              str(tmp / EMA_NAME), metadata={"decay": repr(float(ema.decay))})
                # the manifest goes last: a checkpoint is intact when every file matches it
                state = {"step": step, "epoch": epoch, "batch_in_epoch": batch_in_epoch,
                         "bad_steps": bad_steps, "num_processes": acc.num_processes,
                         "batch_size": self.cfg.batch_size, "time": time.time(),
                         "files": _manifest(tmp)}
                with open(tmp / STATE_NAME, "w", encoding="utf-8") as f:
                    f.write(json.dumps(state, indent=2))
                    f.flush()
                    os.fsync(f.fileno())
                # the whole directory is swapped into place (an old one of that step is removed after)
                replace_dir(tmp, final)
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            where = e.filename or tmp
            raise TrainingError(f"{where}: {e.strerror or e}: the checkpoint of step {step} was not "
                                f"written (removed; the previous checkpoints are intact)") from None
        if acc.is_main_process:
            old = _checkpoint_dirs(self.out_dir)
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
        lock, failure = None, None
        try:
            if acc.is_main_process:
                try:
                    lock = self._prepare_out_dir()
                except TrainingError as e:
                    failure = e
            if acc.num_processes > 1:  # every process stops when the main one cannot start
                bad = torch.tensor(0.0 if failure is None else 1.0, device=acc.device)
                if acc.reduce(bad, "sum").item() > 0 and failure is None:
                    raise TrainingError(f"{self.out_dir}: the main process could not start "
                                        "the training (see its error)")
            if failure is not None:
                raise failure
            return self._fit(acc)
        finally:
            if lock is not None:
                lock.close()  # releases the out-dir lock

    def _run_entries(self) -> list[str]:
        """The parts of a training run already in the out-dir."""
        found = []
        for name in RUN_ENTRIES:
            p = self.out_dir / name
            if name == "checkpoints":
                if _checkpoint_dirs(self.out_dir):
                    found.append(name)
            elif p.exists():
                found.append(name)
        return found

    def _prepare_out_dir(self):
        """Main process: lock the out-dir, refuse to start over an existing run (unless
        ``overwrite``, which removes it first) and pick the checkpoint to resume from.
        Returns the open lock file."""
        out = self.out_dir
        if self.resume and self.overwrite:
            raise TrainingError("--resume and --overwrite exclude each other (continue the run "
                                "in the out-dir, or delete it and start afresh)")
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise TrainingError(f"{out}: cannot create the out-dir ({e.strerror})") from None
        lock = _acquire_lock(out)
        try:
            found = self._run_entries()
            self._resume_point = (None, None, [])
            old_config = None
            if not self.resume:
                if found and not self.overwrite:
                    raise TrainingError(f"{out}: holds a training run already ({', '.join(found)}); "
                                        "--resume continues it, --overwrite deletes it and starts "
                                        "afresh")
                removed = []
                for name in OVERWRITE_ENTRIES if self.overwrite else ():
                    p = out / name
                    if p.is_dir() and not p.is_symlink():
                        shutil.rmtree(p)
                    elif p.exists() or p.is_symlink():
                        p.unlink()
                    else:
                        continue
                    removed.append(name)
                if removed:
                    log.warning("--overwrite: removed the previous run in %s (%s)", out,
                                ", ".join(removed))
            else:
                latest, state, skipped = find_checkpoint(out)
                for ck, why in skipped:
                    log.warning("skipping the corrupt checkpoint %s: %s", ck, why)
                if latest is None and skipped:
                    raise TrainingError(f"{out}: no intact checkpoint to resume from ({skipped[0][1]}); "
                                        "--overwrite deletes the run and starts afresh")
                if latest is None and "model" in found:
                    raise TrainingError(f"{out}: holds a trained model but no checkpoint to resume "
                                        "from; --overwrite deletes the run and starts afresh")
                if latest is not None and skipped:
                    log.warning("resuming from the older checkpoint %s", latest)
                self._resume_point = (latest, state, skipped)
                if latest is not None and (out / "config.yaml").is_file():
                    from vocoflow.yamlfile import YAMLFileError, read_yaml_file

                    try:
                        old_config = read_yaml_file(out / "config.yaml")
                    except YAMLFileError as e:
                        log.warning("%s; not comparing it with the new config", e)
            self._old_config = old_config
        except OSError as e:
            lock.close()
            raise TrainingError(f"{e.filename or out}: {e.strerror or e}") from None
        except BaseException:
            lock.close()
            raise
        return lock

    def _write_config(self, step: int) -> None:
        """Main process, once the run has started (or resumed): ``config.yaml`` records the
        config in effect; on resume the changes from the recorded one are logged."""
        if self.config_dump is None:
            return
        import yaml

        old = getattr(self, "_old_config", None)
        if self.resume and isinstance(old, dict):
            changes = _config_changes(old, self.config_dump)
            if changes:
                log.warning("resuming with a changed config; the new values are in effect from "
                            "step %d on and config.yaml now records them: %s", step,
                            "; ".join(changes))
        try:
            atomic_write_text(self.out_dir / "config.yaml",
                              yaml.safe_dump(self.config_dump, sort_keys=False))
        except OSError as e:
            raise TrainingError(f"{e.filename or self.out_dir / 'config.yaml'}: "
                                f"{e.strerror or e}") from None

    def _check_model_matches(self, ckpt: Path, model: nn.Module) -> None:
        """Refuse a checkpoint whose saved parameters do not fit the model built from the
        config (named: the first parameter that differs)."""
        f = ckpt / "model.safetensors"
        if not f.is_file():
            return
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(f), "pt") as sf:
                saved = {k: tuple(sf.get_slice(k).get_shape()) for k in sf.keys()}
        except (SafetensorError, OSError) as e:
            raise TrainingError(f"{f}: unreadable ({e})") from None
        own = model.state_dict()
        present = {v.data_ptr() for k, v in own.items() if k in saved}
        hint = "the model section differs from the run's; resume with its config, or --overwrite"
        for k, v in own.items():
            if k not in saved:
                if v.data_ptr() in present:  # tied to a saved tensor (stored once)
                    continue
                raise TrainingError(f"cannot resume from {ckpt}: the model has {k} "
                                    f"{tuple(v.shape)}, the checkpoint has no such parameter ({hint})")
            if saved[k] != tuple(v.shape):
                raise TrainingError(f"cannot resume from {ckpt}: {k} has shape {saved[k]} in the "
                                    f"checkpoint, {tuple(v.shape)} in the model ({hint})")
        for k in saved:
            if k not in own:
                raise TrainingError(f"cannot resume from {ckpt}: the checkpoint has {k} "
                                    f"{saved[k]}, the model has no such parameter ({hint})")

    def _fit(self, acc) -> dict:
        cfg = self.cfg
        task = self.task
        latest, state, skipped = None, None, []
        if self.resume:
            latest, state, skipped = (self._resume_point if acc.is_main_process
                                      else find_checkpoint(self.out_dir))
            if latest is None and acc.is_main_process:
                log.info("--resume: no checkpoint in %s, starting from scratch", self.out_dir)
        # a task may skip one-off initialisation (fits to data) that the checkpoint replaces
        task.resuming = latest is not None
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

        if latest is not None:
            if state.get("batch_size") not in (None, cfg.batch_size):
                raise TrainingError(f"cannot resume {latest}: it was trained with global batch "
                                    f"{state['batch_size']}, the config now says {cfg.batch_size}")
            self._check_model_matches(latest, model)
        if latest is None and hasattr(task, "data_init"):
            # the same first global batch on every process -> identical initialisation
            # (the data of the whole first optimizer step, accumulation included)
            sampler.set_epoch(0)
            first = iter(batch_sampler)
            idx = [i for _ in range(min(cfg.grad_accum, batches_per_epoch)) for i in next(first)]
            init_batch = collate([dataset[i] for i in idx])
            if not _all_finite(init_batch):
                raise TrainingError(f"non-finite values in the first batch ({_describe_items(dataset, idx)}); "
                                    "fix the data before training")
            task.data_init(model, init_batch, idx)

        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=cfg.betas,
                                      weight_decay=cfg.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg))
        model, optimizer, loader, scheduler = acc.prepare(model, optimizer, loader, scheduler)
        ema = EMA(acc.unwrap_model(model), cfg.ema_decay) if cfg.ema_decay else None

        step, epoch, batch_in_epoch, bad_steps = 0, 0, 0, 0
        if latest is not None:
            try:
                acc.load_state(str(latest))
                if ema is not None:
                    self._load_ema(ema, latest)
            except (OSError, RuntimeError, ValueError, KeyError) as e:
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise TrainingError(f"cannot resume from {latest}: {first}") from None
            step, epoch = state["step"], state["epoch"]
            batch_in_epoch, bad_steps = state["batch_in_epoch"], state["bad_steps"]
            self._apply_hyperparameters(optimizer, scheduler, step)
            if acc.is_main_process:
                self._truncate_log(step)
                for ck, _ in skipped:  # newer and corrupt: set aside, out of the run
                    aside = ck.with_name(f".corrupt_{ck.name}")
                    shutil.rmtree(aside, ignore_errors=True)
                    ck.rename(aside)
                    log.warning("moved the corrupt checkpoint %s to %s", ck, aside)
                log.info("resumed from %s (step %d, epoch %d)", latest, step, epoch)
            acc.wait_for_everyone()
        elif acc.is_main_process and self._log_path().exists():
            self._log_path().unlink()
        if acc.is_main_process:
            self._write_config(step)

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
                               f"(epoch {epoch}, {_describe_items(dataset, indices)})")
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
                self._save_checkpoint(acc, step, epoch, batch_in_epoch, bad_steps, ema)
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

    def _apply_hyperparameters(self, optimizer, scheduler, step):
        """On resume the optimizer's moments come from the checkpoint but its hyperparameters
        (lr, betas, weight_decay) from the config, as the schedule does: the run continues with
        what config.yaml records."""
        cfg = self.cfg
        lr = cfg.lr * _lr_lambda(cfg)(step)
        for g in optimizer.param_groups:
            g["initial_lr"], g["lr"] = cfg.lr, lr
            g["betas"], g["weight_decay"] = tuple(cfg.betas), cfg.weight_decay
        inner = getattr(scheduler, "scheduler", scheduler)
        inner.base_lrs = [cfg.lr for _ in optimizer.param_groups]
        inner._last_lr = [lr for _ in optimizer.param_groups]

    def _load_ema(self, ema: EMA, ckpt: Path) -> None:
        f = ckpt / EMA_NAME
        old = ckpt / "custom_checkpoint_0.pkl"  # checkpoints of earlier versions
        if f.is_file():
            from safetensors.torch import load_file

            shadow = load_file(str(f))
        elif old.is_file():
            shadow = torch.load(old, map_location="cpu", weights_only=True)["shadow"]
        else:
            log.warning("%s has no EMA; the average starts from the resumed weights", ckpt)
            return
        if set(shadow) != set(ema.shadow):
            raise ValueError(f"{f}: its EMA parameters differ from the model's")
        # the decay is the config's (as the other hyperparameters on resume)
        ema.shadow = {k: shadow[k].float().to(ema.shadow[k].device) for k in ema.shadow}

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
