"""Objective metrics and the evaluation report."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile as sf

from vocoflow.cli.main import main
from vocoflow.eval.metrics import (
    align_lengths,
    f0_metrics,
    log_mel_distance,
    pesq_wb,
    warped_cepstral_distortion,
)

SR = 16000


def _voice(seconds=1.0, f0=180.0, seed=0):
    """A crude voiced signal: harmonics of a gliding f0 with a formant-ish envelope + breath."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(SR * seconds)) / SR
    f = f0 * (1 + 0.1 * np.sin(2 * np.pi * 1.5 * t))
    phase = 2 * np.pi * np.cumsum(f) / SR
    x = sum(np.sin(k * phase) / k * np.exp(-((k * f0 - 700) / 900) ** 2) for k in range(1, 30))
    x = x * (0.6 + 0.4 * np.sin(2 * np.pi * 2 * t)) + 0.003 * rng.standard_normal(len(t))
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def test_identical_signals_score_perfectly():
    x = _voice()
    assert warped_cepstral_distortion(x, x, SR) == 0.0
    assert log_mel_distance(x, x, SR) == 0.0
    f = f0_metrics(x, x, SR)
    assert f["f0_rmse_hz"] == 0.0 and f["vuv_error"] == 0.0
    assert pesq_wb(x, x, SR) > 4.5


def test_metrics_degrade_with_noise():
    x = _voice()
    rng = np.random.default_rng(1)
    small = x + 0.003 * rng.standard_normal(len(x)).astype(np.float32)
    big = x + 0.05 * rng.standard_normal(len(x)).astype(np.float32)
    assert warped_cepstral_distortion(x, small, SR) < warped_cepstral_distortion(x, big, SR)
    assert log_mel_distance(x, small, SR) < log_mel_distance(x, big, SR)
    assert pesq_wb(x, small, SR) > pesq_wb(x, big, SR)


def test_f0_rmse_measures_a_pitch_shift():
    a, b = _voice(f0=180.0), _voice(f0=198.0)  # +10 %
    rmse = f0_metrics(a, b, SR)["f0_rmse_hz"]
    assert 10 < rmse < 30  # about 18-20 Hz of difference


def test_mcd_matches_direct_formula():
    """Independent computation: the warped cepstrum by an explicit cosine sum."""
    import librosa

    x, y = _voice(seed=0), _voice(f0=170.0, seed=2)
    alpha = 0.42

    def ceps(w):
        spec = np.abs(librosa.stft(w.astype(np.float64), n_fft=1024, hop_length=256))
        k = spec.shape[0]
        wt = np.linspace(0, np.pi, k)
        lin = wt - 2 * np.arctan(alpha * np.sin(wt) / (1 + alpha * np.cos(wt)))
        logamp = np.stack([np.interp(lin / np.pi * (k - 1), np.arange(k), np.log(np.maximum(c, 1e-8)))
                           for c in spec.T])                        # (frames, k)
        n = 2 * (k - 1)
        # real cepstrum of the even spectrum: c_d = (1/n) sum_m L_m cos(2 pi d m / n), mirrored
        full = np.concatenate([logamp, logamp[:, -2:0:-1]], axis=1)
        d = np.arange(25)[:, None]
        basis = np.cos(2 * np.pi * d * np.arange(n)[None, :] / n) / n
        energy = 10 * np.log10(np.maximum((spec ** 2).sum(0), 1e-20))
        return full @ basis.T, energy

    cx, e = ceps(x)
    cy, _ = ceps(y)
    keep = e >= e.max() - 60
    diff = cx[keep, 1:] - cy[keep, 1:]
    ref = np.mean(10 / math.log(10) * np.sqrt(2 * (diff ** 2).sum(1)))
    assert warped_cepstral_distortion(x, y, SR) == pytest.approx(ref, rel=1e-9)
    assert 1.0 < ref < 20.0  # a plausible scale for different voices


def test_length_rule_cuts_to_shorter():
    a, b, diff = align_lengths(np.ones(10), np.ones(7))
    assert len(a) == len(b) == 7 and diff == -3


def test_evaluate_cli_with_griffin_lim_and_bad_files(tmp_path, capsys):
    ref_dir, gen_dir = tmp_path / "ref", tmp_path / "gen"
    ref_dir.mkdir()
    gen_dir.mkdir()
    for i in range(3):
        x = _voice(seed=i, f0=150 + 20 * i)
        sf.write(ref_dir / f"u{i}.wav", x, SR, subtype="PCM_16")
        if i == 0:
            rng = np.random.default_rng(i)
            sf.write(gen_dir / f"u{i}.wav", x + 1e-4 * rng.standard_normal(len(x)), SR,
                     subtype="PCM_16")
    (gen_dir / "u1.wav").write_bytes(b"not a wav file")  # corrupt; u2 missing
    out = tmp_path / "eval"
    rc = main(["evaluate", "--ref", str(ref_dir), "--gen", f"noisy={gen_dir}",
               "--out-dir", str(out), "--griffin-lim", "--feature-preset", "asterisk16k",
               "--metrics", "pesq,mcd,lmd"])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert res["summary"]["noisy"]["pesq"]["n"] == 1
    assert res["summary"]["griffin-lim"]["pesq"]["n"] == 3
    reasons = {(f["system"], f["utt"]): f["reason"] for f in res["failures"]}
    assert ("noisy", "u2") in reasons and "no generated file" in reasons[("noisy", "u2")]
    assert ("noisy", "u1") in reasons and "u1.wav" in reasons[("noisy", "u1")]
    md = (out / "results.md").read_text()
    assert "| noisy |" in md and "| griffin-lim |" in md
    assert list(out.glob("spectrogram_*.png"))
    # the noisy copy beats Griffin-Lim on MCD
    s = res["summary"]
    assert s["noisy"]["mcd_sptk_db"]["mean"] < s["griffin-lim"]["mcd_sptk_db"]["mean"]


def test_evaluate_cli_nothing_scored_fails(tmp_path):
    ref_dir, gen_dir = tmp_path / "ref", tmp_path / "gen"
    ref_dir.mkdir()
    gen_dir.mkdir()
    sf.write(ref_dir / "a.wav", _voice(), SR)
    rc = main(["evaluate", "--ref", str(ref_dir), "--gen", f"x={gen_dir}",
               "--out-dir", str(tmp_path / "o"), "--metrics", "mcd"])
    assert rc == 1
