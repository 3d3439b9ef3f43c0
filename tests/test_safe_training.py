"""The trainer keeps experiments safe: no silent replacement of a run, one writer per out-dir,
verified checkpoints with fallback, torn logs, a full disk, bad configs, changed models on
resume, changed hyperparameters on resume, and NaN errors that name utterances."""

from __future__ import annotations

import errno
import json
import logging
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from toytask import ToyDataset, ToyTask
from vocoflow.cli import main as cli_main
from vocoflow.flows import ActNorm, AffineCoupling, Flow, Normal, Reverse, Sequential
from vocoflow.train.trainer import (
    LOCK_NAME,
    EpochShuffleSampler,
    Trainer,
    TrainingError,
    find_checkpoint,
    verify_checkpoint,
)
from vocoflow.train.trainer_config import TrainConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CONFIGS = Path(__file__).parent.parent / "configs"


def _cfg(**kw):
    base = dict(steps=8, batch_size=8, lr=1e-2, checkpoint_every=2, validate_every=100,
                log_every=1, seed=3)
    base.update(kw)
    return TrainConfig(**base)


def _fit(out, cfg=None, task=None, **kw):
    return Trainer(task or ToyTask(), cfg or _cfg(), out, cpu=True, progress=False, **kw).fit()


def _records(out):
    return [json.loads(ln) for ln in (Path(out) / "train_log.jsonl").read_text().splitlines()]


def _nll(out):
    return [(r["step"], r["nll"]) for r in _records(out) if "nll" in r]


def _same_run(a, b):
    """Two logs hold the same steps, once each, with equal losses."""
    (sa, la), (sb, lb) = zip(*_nll(a)), zip(*_nll(b))
    assert list(sa) == list(sb) == sorted(set(sa))
    assert list(la) == pytest.approx(list(lb), rel=1e-7)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """An uninterrupted 8-step run and one stopped after 6 steps (checkpoints 2, 4, 6)."""
    root = tmp_path_factory.mktemp("runs")
    _fit(root / "full")
    _fit(root / "part", stop_after=6)
    return root


def _copy_part(runs, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(runs / "part", out)
    return out


# ----------------------------------------------------------------- an existing run is not replaced
def test_fresh_start_into_an_existing_run_is_refused_and_overwrite_replaces_it(runs, tmp_path):
    out = _copy_part(runs, tmp_path)
    log_before = (out / "train_log.jsonl").read_bytes()
    with pytest.raises(TrainingError) as info:
        _fit(out)
    msg = str(info.value)
    assert str(out) in msg and "--resume" in msg and "--overwrite" in msg and "\n" not in msg
    assert (out / "train_log.jsonl").read_bytes() == log_before
    assert [p.name for p in sorted((out / "checkpoints").iterdir())] == [
        "step_00000002", "step_00000004", "step_00000006"]
    with pytest.raises(TrainingError, match="exclude each other"):
        _fit(out, resume=True, overwrite=True)
    # --overwrite: the old run's checkpoints and log are gone, the new run stands alone
    _fit(out, _cfg(steps=3, checkpoint_every=1), overwrite=True)
    assert [p.name for p in sorted((out / "checkpoints").iterdir())] == [
        "step_00000001", "step_00000002", "step_00000003"]
    assert [s for s, _ in _nll(out)] == [1, 2, 3]
    # the new run resumes as itself: no splice with the old one
    _fit(out, _cfg(steps=5, checkpoint_every=1), resume=True)
    assert [s for s, _ in _nll(out)] == [1, 2, 3, 4, 5]


# ------------------------------------------------------------------------------------- the lock
_HOLD = textwrap.dedent("""
    import fcntl, sys
    f = open(sys.argv[1], "a+")
    fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    print("locked", flush=True)
    sys.stdin.read()
""")

_TRY = textwrap.dedent("""
    import fcntl, sys
    f = open(sys.argv[1], "a+")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        print("busy")
    else:
        print("free")
""")


def _lock_state(out) -> str:
    return subprocess.run([sys.executable, "-c", _TRY, str(Path(out) / LOCK_NAME)],
                          capture_output=True, text=True, check=True).stdout.strip()


class LockProbeTask(ToyTask):
    """Looks at the out-dir lock from another process while the training runs."""

    def __init__(self, out):
        super().__init__()
        self.out = out
        self.seen = []

    def validate(self, model):
        self.seen.append(_lock_state(self.out))
        return super().validate(model)


def test_a_second_training_of_one_out_dir_is_refused_while_the_first_holds_the_lock(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(out / LOCK_NAME)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(TrainingError) as info:
            _fit(out, _cfg(steps=2))
        msg = str(info.value)
        assert str(out) in msg and "another training" in msg and "\n" not in msg
        assert not (out / "train_log.jsonl").exists() and not (out / "checkpoints").exists()
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    # the lock is held for the whole run and released at its end
    task = LockProbeTask(out)
    _fit(out, _cfg(steps=4, validate_every=2), task=task)
    assert task.seen == ["busy", "busy"]
    assert _lock_state(out) == "free"


# ------------------------------------------------------------------- changed config on resume
def test_resume_uses_and_records_the_new_lr(runs, tmp_path, caplog):
    out = tmp_path / "run"
    _fit(out, _cfg(), stop_after=4, config_dump={"train": _cfg().to_dict()})
    ck = load_file(str(out / "checkpoints" / "step_00000004" / "model.safetensors"))
    new = _cfg(lr=0.0)
    with caplog.at_level(logging.WARNING, logger="vocoflow.train"):
        _fit(out, new, resume=True, config_dump={"train": new.to_dict()})
    assert "train.lr: 0.01 -> 0.0" in caplog.text
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["lr"] == 0.0
    assert [r["lr"] for r in _records(out) if "nll" in r] == [0.01] * 4 + [0.0] * 4
    # lr 0 (no weight decay): the last four steps left the weights exactly as checkpointed
    final = torch.load(out / "model" / "model.pt", weights_only=True)
    assert set(ck) <= set(final)
    for k, v in ck.items():
        assert torch.equal(final[k], v), k


# ------------------------------------------------------------------ corrupt checkpoints and logs
def _flip_byte(path: Path, offset_from_end: int = 8):
    data = bytearray(path.read_bytes())
    data[-offset_from_end] ^= 0x10
    path.write_bytes(bytes(data))


def _truncate(path: Path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("damage, file, reason", [
    (_flip_byte, "model.safetensors", "sha256"),
    (_truncate, "optimizer.bin", "truncated"),
    (lambda p: p.write_text('{"step": 6, "ep'), "trainer_state.json", "trainer_state.json"),
    (lambda p: p.unlink(), "trainer_state.json", "trainer_state.json: missing"),
])
def test_resume_falls_back_from_a_corrupt_newest_checkpoint(runs, tmp_path, caplog, damage, file,
                                                           reason):
    out = _copy_part(runs, tmp_path)
    newest = out / "checkpoints" / "step_00000006"
    damage(newest / file)
    with pytest.raises(TrainingError, match=reason):
        verify_checkpoint(newest)
    latest, _, skipped = find_checkpoint(out)
    assert latest.name == "step_00000004" and [p for p, _ in skipped] == [newest]
    with caplog.at_level(logging.WARNING, logger="vocoflow.train"):
        _fit(out, resume=True)
    assert f"skipping the corrupt checkpoint {newest}" in caplog.text and reason in caplog.text
    # resumed from step 4: the same run as the uninterrupted one, each step logged once
    _same_run(out, runs / "full")
    assert not newest.exists() or verify_checkpoint(newest)["step"] == 6


def test_resume_with_no_intact_checkpoint_names_the_file(tmp_path):
    out = tmp_path / "run"
    _fit(out, _cfg(steps=4, checkpoint_every=4), stop_after=4)
    state = out / "checkpoints" / "step_00000004" / "trainer_state.json"
    state.write_text("{")
    with pytest.raises(TrainingError, match=f"{state}: unreadable or truncated"):
        _fit(out, resume=True)
    state.write_text('{"step": 4}')
    with pytest.raises(TrainingError, match=f"{state}: short or malformed"):
        _fit(out, resume=True)


def test_torn_last_log_line_is_dropped_and_a_bad_middle_line_named(runs, tmp_path, caplog):
    out = _copy_part(runs, tmp_path)
    logf = out / "train_log.jsonl"
    good = logf.read_text()
    logf.write_text(good + '{"step": 7, "epoch": 0, "nl')  # killed while writing step 7
    with caplog.at_level(logging.WARNING, logger="vocoflow.train"):
        _fit(out, resume=True)
    assert f"{logf}: line 7 is torn" in caplog.text
    _same_run(out, runs / "full")

    out2 = _copy_part(runs, tmp_path / "b")
    lines = (out2 / "train_log.jsonl").read_text().splitlines()
    lines[1] = lines[1][:10]
    (out2 / "train_log.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(TrainingError, match=f"{out2 / 'train_log.jsonl'}: line 2: not a JSON record"):
        _fit(out2, resume=True)


# ------------------------------------------------------------------------------------ full disk
def test_disk_full_while_checkpointing_is_one_line_and_keeps_the_previous_ones(tmp_path,
                                                                               monkeypatch):
    from accelerate import Accelerator

    real = Accelerator.save_state
    calls = []

    def save_state(self, output_dir=None, **kw):
        calls.append(output_dir)
        real(self, output_dir, **kw)
        if len(calls) == 2:  # the second checkpoint: half written when the disk fills up
            bad = Path(output_dir) / "optimizer.bin"
            raise OSError(errno.ENOSPC, "No space left on device", str(bad))

    monkeypatch.setattr(Accelerator, "save_state", save_state)
    out = tmp_path / "run"
    with pytest.raises(TrainingError) as info:
        _fit(out, _cfg(steps=8, checkpoint_every=4))
    msg = str(info.value)
    assert "\n" not in msg and "No space left on device" in msg
    assert str(Path(calls[1]) / "optimizer.bin") in msg and "step 8" in msg
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step_00000004"]
    assert verify_checkpoint(out / "checkpoints" / "step_00000004")["step"] == 4


# -------------------------------------------------------------------------- changed model shape
class WideToyTask(ToyTask):
    def build_model(self):
        torch.manual_seed(self.seed)
        return Flow(Normal(), Sequential(ActNorm(2), AffineCoupling(2, hidden=32), Reverse(),
                                         AffineCoupling(2, hidden=16)))


def test_resume_with_a_changed_model_names_the_checkpoint_and_parameter(runs, tmp_path):
    out = _copy_part(runs, tmp_path)
    first = next(k for k, v in WideToyTask().build_model().state_dict().items()
                 if v.shape != ToyTask().build_model().state_dict()[k].shape)
    with pytest.raises(TrainingError) as info:
        _fit(out, task=WideToyTask(), resume=True)
    msg = str(info.value)
    assert "\n" not in msg and str(out / "checkpoints" / "step_00000006") in msg
    assert f"{first} has shape" in msg


# --------------------------------------------------------------------------- NaN names utterances
class NamedToyDataset(ToyDataset):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.utt_ids = [f"utt{i:03d}" for i in range(len(self))]


class NamedToyTask(ToyTask):
    def train_dataset(self):
        return NamedToyDataset(self.n, self.poison_index)


def test_nonfinite_loss_names_the_utterances_of_the_batch(tmp_path):
    sampler = list(EpochShuffleSampler(64, 3))
    poison = sampler[20]  # in the third batch of epoch 0
    with pytest.raises(TrainingError) as info:
        _fit(tmp_path, _cfg(steps=20), task=NamedToyTask(poison_index=poison))
    msg = str(info.value)
    batch = sampler[16:24]
    assert "at step 3" in msg and "utterances " + ", ".join(f"utt{i:03d}" for i in batch) in msg
    assert f"non-finite input values in utt{poison:03d}" in msg


# ----------------------------------------------------------------------------------- CLI level
def _write_config(path, **sections):
    cfg = yaml.safe_load((CONFIGS / "waveglow_debug.yaml").read_text())
    cfg.update(sections)
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize("sections, key", [
    ({"synthesis": [1, 2]}, "'synthesis:' must be a mapping"),
    ({"synthesis": {"sigma": "high"}}, "synthesis.sigma"),
    ({"synthesis": {"sigmaa": 0.5}}, "synthesis.sigmaa"),
    ({"train": {"steps": [1], "batch_size": 2}}, "train.steps"),
    ({"train": {"lr": True}}, "train.lr"),
    ({"vocoder": {}}, "vocoder"),
])
def test_bad_config_is_one_line_naming_file_and_key(tmp_path, capsys, sections, key):
    cfg = _write_config(tmp_path / "bad.yaml", **sections)
    rc = cli_main(["train", "--config", str(cfg), "--train-dump", str(tmp_path / "none"),
                        "--out-dir", str(tmp_path / "out"), "--cpu", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1
    assert str(cfg) in err and key in err
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def dumps(tmp_path_factory):
    from data_fixtures import make_tone_dumps

    return make_tone_dumps(tmp_path_factory.mktemp("dumps"), counts=(("train", 2),))


def _train(dumps, cfg, out, *extra):
    return cli_main(["train", "--config", str(cfg), "--train-dump", str(dumps["train"]),
                          "--out-dir", str(out), "--cpu", "--no-progress", "--steps", "1",
                          "--set", "train.checkpoint_every=1", *map(str, extra)])


def test_cli_refuses_an_existing_run_and_overwrites_it_on_request(dumps, tmp_path, capsys):
    cfg = _write_config(tmp_path / "c.yaml")
    out = tmp_path / "exp"
    assert _train(dumps, cfg, out) == 0
    capsys.readouterr()
    assert _train(dumps, cfg, out) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(out) in err and "--overwrite" in err
    (out / "checkpoints" / "step_00000001").rename(out / "checkpoints" / "step_00000009")
    assert _train(dumps, cfg, out, "--overwrite") == 0
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step_00000001"]
    # a model section that no longer fits the checkpoint: named, no traceback
    wide = _write_config(tmp_path / "wide.yaml", model={
        **yaml.safe_load(cfg.read_text())["model"], "wn_channels": 8})
    capsys.readouterr()
    assert _train(dumps, wide, out, "--resume", "--steps", "2") == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(out / "checkpoints" / "step_00000001") in err
    assert "has shape" in err
    # an unknown model field names the config file
    odd = _write_config(tmp_path / "odd.yaml", model={"type": "waveglow", "n_flowz": 2})
    assert _train(dumps, odd, tmp_path / "exp2") == 1
    err = capsys.readouterr().err.strip()
    assert str(odd) in err and "n_flowz" in err
