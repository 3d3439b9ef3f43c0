"""Objective metrics of generated speech against a reference.

All functions take mono float waveforms at one sample rate. Length rule (:func:`align_lengths`):
generated and reference audio are cut to the shorter of the two, and a difference of more than
one hop (or 1 %) is reported as a warning by the caller, since a vocoder's output should match
its input's length to within the framing.

* PESQ wide-band (ITU-T P.862.2) at 16 kHz (audio at other rates is resampled).
* MCD: mel-cepstral distortion in dB, ``(10 / ln 10) * sqrt(2 * sum_{d=1..D} (c_d - c'_d)^2)``
  averaged over frames, with ``c`` the DCT-II (orthonormal) of the natural-log mel power
  spectrum (``D = 24``, ``c_0`` excluded, 1:1 frame alignment, no DTW: vocoded audio is time
  aligned with its reference). Values are comparable between systems in one report, not with
  SPTK-based MCDs in papers.
* Log-mel spectral distance in dB: per frame, the RMS over mel bins of
  ``10 log10`` power differences, averaged over frames.
* F0 RMSE (Hz) over frames voiced in both signals, and voiced/unvoiced decision error rate,
  both from librosa's pYIN.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "align_lengths", "pesq_wb", "mel_cepstral_distortion", "log_mel_distance", "f0_metrics",
    "evaluate_pair",
]


def align_lengths(ref: np.ndarray, gen: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Cut both signals to the shorter length; return them and the length difference."""
    n = min(len(ref), len(gen))
    return ref[:n], gen[:n], len(gen) - len(ref)


def _resample(wav: np.ndarray, sr: int, target: int) -> np.ndarray:
    if sr == target:
        return wav
    import librosa

    return librosa.resample(wav.astype(np.float64), orig_sr=sr, target_sr=target)


def pesq_wb(ref: np.ndarray, gen: np.ndarray, sr: int) -> float:
    """Wide-band PESQ (MOS-LQO, about 1.0 to 4.64)."""
    from pesq import pesq

    r = _resample(np.asarray(ref, np.float64), sr, 16000)
    g = _resample(np.asarray(gen, np.float64), sr, 16000)
    r, g, _ = align_lengths(r, g)
    return float(pesq(16000, r, g, "wb"))


def _mel_power(wav, sr, n_fft=1024, hop=256, n_mels=80, fmax=None):
    import librosa

    m = librosa.feature.melspectrogram(y=np.asarray(wav, np.float64), sr=sr, n_fft=n_fft,
                                       hop_length=hop, n_mels=n_mels, fmax=fmax, power=2.0,
                                       center=True)
    return np.maximum(m, 1e-10)


def mel_cepstral_distortion(ref, gen, sr, n_coeffs: int = 24, n_fft: int = 1024,
                            hop: int = 256, n_mels: int = 80) -> float:
    """MCD in dB (see the module docstring for the exact definition)."""
    from scipy.fft import dct

    r, g, _ = align_lengths(np.asarray(ref), np.asarray(gen))
    cr = dct(np.log(_mel_power(r, sr, n_fft, hop, n_mels)), type=2, axis=0, norm="ortho")
    cg = dct(np.log(_mel_power(g, sr, n_fft, hop, n_mels)), type=2, axis=0, norm="ortho")
    diff = cr[1 : n_coeffs + 1] - cg[1 : n_coeffs + 1]
    return float(np.mean(10.0 / math.log(10.0) * np.sqrt(2.0 * np.sum(diff ** 2, axis=0))))


def log_mel_distance(ref, gen, sr, n_fft: int = 1024, hop: int = 256, n_mels: int = 80) -> float:
    """Mean over frames of the RMS (over mel bins) difference of 10*log10 mel power, in dB."""
    r, g, _ = align_lengths(np.asarray(ref), np.asarray(gen))
    d = 10 * np.log10(_mel_power(r, sr, n_fft, hop, n_mels)) - 10 * np.log10(
        _mel_power(g, sr, n_fft, hop, n_mels))
    return float(np.mean(np.sqrt(np.mean(d ** 2, axis=0))))


def f0_metrics(ref, gen, sr, fmin: float = 60.0, fmax: float = 500.0,
               frame_length: int = 1024, hop: int = 256) -> dict:
    """``{"f0_rmse_hz", "vuv_error"}`` from pYIN tracks of both signals."""
    import librosa

    r, g, _ = align_lengths(np.asarray(ref, np.float64), np.asarray(gen, np.float64))
    f_r, v_r, _ = librosa.pyin(r, fmin=fmin, fmax=fmax, sr=sr, frame_length=frame_length,
                               hop_length=hop)
    f_g, v_g, _ = librosa.pyin(g, fmin=fmin, fmax=fmax, sr=sr, frame_length=frame_length,
                               hop_length=hop)
    n = min(len(v_r), len(v_g))
    v_r, v_g, f_r, f_g = v_r[:n], v_g[:n], f_r[:n], f_g[:n]
    both = v_r & v_g
    rmse = float(np.sqrt(np.mean((f_r[both] - f_g[both]) ** 2))) if both.any() else float("nan")
    return {"f0_rmse_hz": rmse, "vuv_error": float(np.mean(v_r != v_g)) if n else float("nan")}


def evaluate_pair(ref, gen, sr, metrics=("pesq", "mcd", "lmd", "f0")) -> dict:
    """All requested metrics of one utterance."""
    out = {}
    if "pesq" in metrics:
        out["pesq"] = pesq_wb(ref, gen, sr)
    if "mcd" in metrics:
        out["mcd_db"] = mel_cepstral_distortion(ref, gen, sr)
    if "lmd" in metrics:
        out["log_mel_db"] = log_mel_distance(ref, gen, sr)
    if "f0" in metrics:
        out.update(f0_metrics(ref, gen, sr))
    return out
