"""End to end on sklearn's 8x8 digits: prepare-image-data, image-baseline, train-image (a few
steps through the shared trainer, then --resume), evaluate-image and sample-image; user errors;
the recipe scripts pass shellcheck."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from vocoflow.cli.main import main
from vocoflow.images import load_image_flow
from vocoflow.images.png import read_png_size

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    d = tmp_path_factory.mktemp("digits")
    assert main(["prepare-image-data", "--dataset", "digits", "--out-dir", str(d / "data")]) == 0
    return d


def test_train_evaluate_sample_end_to_end(digits, capsys):
    data, exp = digits / "data", digits / "exp"
    cfg = {
        "model": {"type": "glow", "levels": 2, "steps": 1, "hidden": 8},
        "train": {"steps": 4, "batch_size": 16, "lr": 1e-3, "checkpoint_every": 2,
                  "validate_every": 2, "log_every": 1},
        "data": {"validate_items": 32, "eval_batch_size": 64},
        "sample": {"temperatures": [0.7]},
    }
    (digits / "glow.yaml").write_text(yaml.safe_dump(cfg))
    args = ["train-image", "--config", str(digits / "glow.yaml"), "--data-dir", str(data),
            "--out-dir", str(exp), "--cpu", "--no-progress"]
    assert main(args + ["--steps", "2"]) == 0  # an "interrupted" run: 2 of 4 steps
    assert main(args + ["--resume"]) == 0      # continues from its step-2 checkpoint
    log = [json.loads(ln) for ln in (exp / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "bpd" in r] == [1, 2, 3, 4]
    assert any("dev_bpd" in r for r in log)
    assert (exp / "loss.png").is_file() and (exp / "model" / "config.yaml").is_file()
    model = load_image_flow(exp / "model")
    assert model.image_shape == (1, 8, 8)

    assert main(["image-baseline", "--data-dir", str(data), "--out", str(exp / "baseline.json")]) == 0
    base = json.loads((exp / "baseline.json").read_text())
    assert 0 < base["test_bpd"] < 8

    capsys.readouterr()
    assert main(["evaluate-image", "--model-dir", str(exp / "model"), "--data-dir", str(data),
                 "--out", str(exp / "eval.json"), "--cpu", "--no-progress", "--limit", "100"]) == 0
    res = json.loads((exp / "eval.json").read_text())
    assert res["n"] == 100 and res["finite"] and 0 < res["bpd"] < 12
    assert json.loads(capsys.readouterr().out)["bpd"] == res["bpd"]

    assert main(["sample-image", "--model-dir", str(exp / "model"), "--out-dir", str(exp / "samples"),
                 "--temperatures", "0.5,1", "--n", "9", "--nrow", "3", "--data-dir", str(data),
                 "--interp-pairs", "2", "--interp-steps", "4", "--cpu"]) == 0
    # 3x3 grid of 8x8 images with 2-pixel padding; interpolation: 2 rows of 4 + 2 endpoints
    assert read_png_size(exp / "samples" / "samples_T0.5.png") == (32, 32)
    assert read_png_size(exp / "samples" / "samples_T1.png") == (32, 32)
    assert read_png_size(exp / "samples" / "interpolation.png") == (2 + 6 * 10, 2 + 2 * 10)

    # a fresh start into the finished run is refused and leaves it alone; --overwrite replaces it
    capsys.readouterr()
    before = (exp / "train_log.jsonl").read_bytes()
    assert main(args + ["--steps", "1"]) == 1
    err = capsys.readouterr().err
    assert "--overwrite" in err and str(exp) in err and len(err.strip().splitlines()) == 1
    assert (exp / "train_log.jsonl").read_bytes() == before
    assert main(args + ["--steps", "1", "--overwrite"]) == 0
    log = [json.loads(ln) for ln in (exp / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "bpd" in r] == [1]


def test_user_errors_exit_1(digits, tmp_path, capsys):
    assert main(["train-image", "--config", str(tmp_path / "none.yaml"), "--data-dir",
                 str(digits / "data"), "--out-dir", str(tmp_path / "o")]) == 1
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"model": {"type": "flowpp"}}))
    assert main(["train-image", "--config", str(bad), "--data-dir", str(digits / "data"),
                 "--out-dir", str(tmp_path / "o")]) == 1
    assert "model.type" in capsys.readouterr().err
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump({"model": {"type": "nice"}}))
    assert main(["train-image", "--config", str(good), "--data-dir", str(tmp_path / "nodata"),
                 "--out-dir", str(tmp_path / "o")]) == 1
    assert "meta.json" in capsys.readouterr().err
    assert main(["prepare-image-data", "--dataset", "mnist", "--src", str(tmp_path),
                 "--out-dir", str(tmp_path / "d")]) == 1
    assert "train-images-idx3-ubyte" in capsys.readouterr().err
    assert main(["evaluate-image", "--model-dir", str(tmp_path), "--data-dir", str(digits / "data")]) == 1
    assert "model.pt" in capsys.readouterr().err


def test_configs_parse_and_name_known_options():
    import inspect

    from vocoflow.images import models

    files = sorted((ROOT / "configs" / "images").glob("*.yaml")) + sorted(ROOT.glob("egs/*/img1/conf/*.yaml"))
    assert len(files) >= 6
    for f in files:
        cfg = yaml.safe_load(f.read_text())
        model = dict(cfg["model"])
        kind = model.pop("type")
        model.pop("dequantization", None)
        model.pop("dequantizer", None)
        allowed = set(inspect.signature(getattr(models, kind)).parameters)
        assert set(model) <= allowed, (f, set(model) - allowed)
        from vocoflow.train.trainer_config import TrainConfig

        TrainConfig.from_dict(cfg.get("train"))


def test_paper_sized_glow_has_the_papers_size():
    from vocoflow.images import build_image_flow

    cfg = yaml.safe_load((ROOT / "configs" / "images" / "glow_cifar10.yaml").read_text())
    model = build_image_flow(cfg["model"], (3, 32, 32))
    n = sum(p.numel() for p in model.parameters())
    assert 43e6 < n < 45e6  # Glow's CIFAR-10 model: about 44M parameters


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_recipe_scripts_pass_shellcheck():
    scripts = [ROOT / "recipes" / "img1" / "img.sh"]
    for corpus in ("fashion_mnist", "mnist", "cifar10"):
        d = ROOT / "egs" / corpus / "img1"
        scripts += [d / "run.sh", d / "path.sh", d / "cmd.sh", *sorted((d / "local").glob("*.sh"))]
    for s in scripts:
        assert s.is_file(), s
    out = subprocess.run(["shellcheck", "-x", *map(str, scripts)], capture_output=True, text=True,
                         cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
