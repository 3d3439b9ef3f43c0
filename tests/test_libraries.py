"""The libraries vocoflow relies on instead of hand-written code: SPTK's mel-cepstrum (pysptk)
for the MCD, Pillow for PNG files, PyYAML for feature configurations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vocoflow.eval.metrics import (
    cepstral_distance_db,
    evaluate_pair,
    mel_cepstral_distortion,
    sptk_mel_cepstrum,
)

SR = 16000


def _voice(seconds=1.0, f0=150.0, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(SR * seconds)) / SR
    f = f0 * (1 + 0.1 * np.sin(2 * np.pi * 1.3 * t))
    phase = 2 * np.pi * np.cumsum(f) / SR
    x = sum(np.sin(k * phase) / k * np.exp(-((k * f0 - 600) / 800) ** 2) for k in range(1, 30))
    return (0.3 * x / np.max(np.abs(x)) + 0.01 * rng.standard_normal(len(t))).astype(np.float64)


def test_sptk_mcd_is_zero_for_identical_signals_and_ignores_gain():
    x = _voice(0.5)
    assert mel_cepstral_distortion(x, x, SR) == 0.0
    assert mel_cepstral_distortion(x, x, SR, dtw=True) == 0.0
    # a gain changes c_0 only (the periodogram is scaled), which the MCD leaves out
    assert mel_cepstral_distortion(x, 0.5 * x, SR) < 0.05


def test_sptk_mel_cepstrum_is_pysptk_mcep_of_blackman_frames():
    """Independent framing: frame t is x[t*hop - 512 : t*hop + 512] (zeros outside) times SPTK's
    window (numpy's Blackman scaled to unit power), its mel-cepstrum pysptk.mcep, alpha 0.42."""
    import pysptk

    x = _voice(0.3, seed=1)
    ceps, energy = sptk_mel_cepstrum(x, SR)
    padded = np.concatenate([np.zeros(512), x, np.zeros(512)])
    assert ceps.shape == (1 + len(x) // 256, 25)
    for t in (0, 3, len(ceps) - 1):
        window = np.blackman(1024) / np.sqrt(np.sum(np.blackman(1024) ** 2))
        frame = padded[t * 256 : t * 256 + 1024] * window
        want = pysptk.mcep(frame, order=24, alpha=0.42, etype=1, eps=1e-8)
        assert np.allclose(ceps[t], want, atol=1e-10)
        assert energy[t] == pytest.approx(10 * np.log10(np.sum(frame ** 2)))


def test_cepstral_distance_formula():
    """A known cepstral difference: 0.1 on each of c_1..c_24 (c_0 differs too, and is left out)
    gives (10 / ln 10) * sqrt(2 * 24 * 0.01) dB."""
    a = np.zeros((2, 25))
    b = np.full((2, 25), 0.1)
    b[:, 0] = 7.0
    want = 10 / math.log(10) * math.sqrt(2 * 24 * 0.01)
    assert np.allclose(cepstral_distance_db(a, b), want)
    assert want == pytest.approx(3.0089, abs=1e-4)


def test_sptk_mcd_equals_the_formula_on_the_cepstra():
    x, y = _voice(seed=0), _voice(f0=170.0, seed=2)
    cx, e = sptk_mel_cepstrum(x, SR)
    cy, _ = sptk_mel_cepstrum(y, SR)
    keep = e >= e.max() - 60
    diff = cx[keep, 1:] - cy[keep, 1:]
    ref = np.mean(10 / math.log(10) * np.sqrt(2 * (diff ** 2).sum(1)))
    assert mel_cepstral_distortion(x, y, SR) == pytest.approx(ref, rel=1e-12)
    assert 1.0 < ref < 20.0
    noise = np.random.default_rng(3).standard_normal(len(x))
    assert mel_cepstral_distortion(x, x + 0.005 * noise, SR) < mel_cepstral_distortion(x, x + 0.05 * noise, SR)


def test_sptk_mcd_dtw_aligns_a_delayed_signal():
    x = _voice(seed=4)
    delayed = np.concatenate([np.zeros(3 * 256), x])[: len(x)]
    plain = mel_cepstral_distortion(x, delayed, SR)
    warped = mel_cepstral_distortion(x, delayed, SR, dtw=True)
    assert warped < 0.5 * plain


def test_evaluate_pair_reports_the_sptk_mcd():
    x, y = _voice(seed=0), _voice(f0=170.0, seed=2)
    out = evaluate_pair(x, y, SR, metrics=("mcd",))
    assert out == {"mcd_sptk_db": mel_cepstral_distortion(x, y, SR)}


def test_png_written_by_pillow_reads_back(tmp_path):
    from PIL import Image

    from vocoflow.images.png import read_png_size, write_png

    img = torch.randint(0, 256, (3, 5, 7), dtype=torch.uint8)
    write_png(tmp_path / "a.png", img)
    with Image.open(tmp_path / "a.png") as im:
        assert im.format == "PNG" and im.mode == "RGB" and im.size == (7, 5)
        assert (np.asarray(im) == img.permute(1, 2, 0).numpy()).all()
    assert read_png_size(tmp_path / "a.png") == (7, 5)
    (tmp_path / "b.png").write_bytes(b"not a png at all")
    with pytest.raises(ValueError, match=r"b\.png: not a PNG file"):
        read_png_size(tmp_path / "b.png")
    Image.new("RGB", (2, 2)).save(tmp_path / "c.png", format="JPEG")
    with pytest.raises(ValueError, match=r"c\.png: not a PNG file \(JPEG\)"):
        read_png_size(tmp_path / "c.png")
    with pytest.raises(ValueError, match="uint8"):
        write_png(tmp_path / "d.png", torch.zeros(2, 4, 4))
    assert not (tmp_path / "d.png").exists()


def test_no_hand_written_yaml_or_png_code_left():
    import importlib.util

    assert importlib.util.find_spec("vocoflow.audio._yaml") is None
    import vocoflow.images.png as png

    assert not hasattr(png, "_chunk")


def test_feature_yaml_errors_name_file_and_line(tmp_path):
    from vocoflow.audio import MelConfig

    p = tmp_path / "feats.yaml"
    p.write_text("n_mels: 80\nfmax: [1, 2]\n")
    with pytest.raises(ValueError, match=r"feats\.yaml:2: nested values are not supported"):
        MelConfig.load(p)
    p.write_text("n_mels: 80\nfmin: 'x\n")
    with pytest.raises(ValueError, match=r"feats\.yaml:2: not valid YAML"):
        MelConfig.load(p)
