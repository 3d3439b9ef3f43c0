"""Objective metrics of generated speech against a reference.

All functions take mono float waveforms at one sample rate. Length rule (:func:`align_lengths`):
generated and reference audio are cut to the shorter of the two, and a difference of more than
one hop (or 1 %) is reported as a warning by the caller, since a vocoder's output should match
its input's length to within the framing.

* PESQ wide-band (ITU-T P.862.2) at 16 kHz (audio at other rates is resampled).
* MCD (:func:`mel_cepstral_distortion`, the one ``vocoflow evaluate`` reports as
  ``mcd_sptk_db``): mel-cepstral distortion in dB,
  ``(10 / ln 10) * sqrt(2 * sum_{d=1..24} (c_d - c'_d)^2)`` (``c_0``, the gain, left out)
  averaged over the reference's non-silent frames (within 60 dB of its loudest frame), with
  ``c`` SPTK's 24th-order mel-cepstrum (``mcep``, through pysptk: UELS estimate of
  Blackman-windowed 1024-sample frames every 256 samples, centred; all-pass constant ``alpha``
  0.42 at 16 kHz, 0.455 at 22.05 kHz, 0.466 at 24 kHz), the definition of the published
  SPTK-based numbers. Frames are compared 1:1 (vocoded audio is time aligned with its
  reference) or, with ``dtw=True``, along a dynamic-time-warping path (librosa's DTW on the
  Euclidean distance of ``c_1..c_24``), as in text-to-speech evaluations.
* Warped-cepstrum distortion (:func:`warped_cepstral_distortion`, vocoflow's earlier "MCD"):
  the same formula with ``c`` the real cepstrum of the log-amplitude spectrum (1024-point FFT,
  hop 256) resampled on SPTK's all-pass frequency warp; not SPTK's ``mcep``, so not comparable
  with published MCDs.
* Log-mel spectral distance in dB: per frame, the RMS over mel bins of
  ``10 log10`` power differences, averaged over frames.
* F0 RMSE (Hz) over frames voiced in both signals, and voiced/unvoiced decision error rate,
  both from librosa's pYIN.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "align_lengths", "pesq_wb", "mel_cepstral_distortion", "warped_cepstral_distortion", "sptk_mel_cepstrum",
    "cepstral_distance_db", "log_mel_distance", "f0_metrics", "evaluate_pair",
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


ALPHAS = {8000: 0.31, 16000: 0.42, 22050: 0.455, 24000: 0.466, 44100: 0.544, 48000: 0.554}


def warp_alpha(sr: int) -> float:
    """The customary all-pass warping constant for a sample rate (nearest tabulated rate)."""
    return ALPHAS[min(ALPHAS, key=lambda r: abs(r - sr))]


def mel_cepstrum(wav, sr, order: int = 24, n_fft: int = 1024, hop: int = 256,
                 alpha: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(cepstra (frames, order + 1), frame energies in dB)`` by frequency warping."""
    import librosa

    alpha = warp_alpha(sr) if alpha is None else alpha
    spec = np.abs(librosa.stft(np.asarray(wav, np.float64), n_fft=n_fft, hop_length=hop,
                               window="hann", center=True))
    k = spec.shape[0]
    warped = np.linspace(0.0, np.pi, k)
    # inverse all-pass warp: the linear frequency that lands on each warped frequency
    linear = warped + 2 * np.arctan(-alpha * np.sin(warped) / (1 + alpha * np.cos(warped)))
    bins = linear / np.pi * (k - 1)
    log_amp = np.log(np.maximum(spec, 1e-8))
    lo = np.clip(np.floor(bins).astype(int), 0, k - 2)
    frac = (bins - lo)[:, None]
    warped_log = (1 - frac) * log_amp[lo] + frac * log_amp[lo + 1]
    ceps = np.fft.irfft(warped_log, axis=0)[: order + 1].T
    energy = 10 * np.log10(np.maximum((spec ** 2).sum(axis=0), 1e-20))
    return ceps, energy


def warped_cepstral_distortion(ref, gen, sr, order: int = 24, n_fft: int = 1024, hop: int = 256,
                               silence_db: float = 60.0) -> float:
    """vocoflow's earlier MCD in dB, on a frequency-warped real cepstrum (module docstring); not
    comparable with SPTK-based MCDs (:func:`mel_cepstral_distortion`)."""
    r, g, _ = align_lengths(np.asarray(ref), np.asarray(gen))
    cr, energy = mel_cepstrum(r, sr, order, n_fft, hop)
    cg, _ = mel_cepstrum(g, sr, order, n_fft, hop)
    keep = energy >= energy.max() - silence_db
    return float(np.mean(cepstral_distance_db(cr[keep], cg[keep])))


def cepstral_distance_db(c1: np.ndarray, c2: np.ndarray) -> np.ndarray:
    """Per frame ``(10 / ln 10) * sqrt(2 * sum_{d>=1} (c1_d - c2_d)^2)`` of ``(frames, order+1)``
    cepstra (``c_0`` left out).

    >>> float(cepstral_distance_db(np.zeros((1, 3)), np.array([[5.0, 0.3, 0.4]]))[0])  # doctest: +ELLIPSIS
    3.0709...
    """
    diff = np.asarray(c1, np.float64)[..., 1:] - np.asarray(c2, np.float64)[..., 1:]
    return 10.0 / math.log(10.0) * np.sqrt(2.0 * np.sum(diff ** 2, axis=-1))


def sptk_mel_cepstrum(wav, sr, order: int = 24, frame_length: int = 1024, hop: int = 256,
                      alpha: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(SPTK mel-cepstra (frames, order + 1), frame energies in dB)``: ``pysptk.mcep`` of
    Blackman-windowed frames of ``frame_length`` samples every ``hop``, the signal padded by
    ``frame_length // 2`` zeros on both sides (frame ``t`` centred on sample ``t * hop``)."""
    import librosa
    import pysptk

    alpha = warp_alpha(sr) if alpha is None else alpha
    x = np.pad(np.asarray(wav, np.float64), (frame_length // 2, frame_length // 2))
    frames = librosa.util.frame(x, frame_length=frame_length, hop_length=hop, axis=0)
    frames = frames * pysptk.blackman(frame_length)
    # etype=1: a small floor added to the periodogram, so silent frames do not stop the estimate
    ceps = np.stack([pysptk.mcep(f, order=order, alpha=alpha, etype=1, eps=1e-8) for f in frames])
    energy = 10 * np.log10(np.maximum((frames ** 2).sum(axis=1), 1e-20))
    return ceps, energy


def mel_cepstral_distortion(ref, gen, sr, order: int = 24, frame_length: int = 1024, hop: int = 256,
                            alpha: float | None = None, silence_db: float = 60.0, dtw: bool = False) -> float:
    """SPTK-style MCD in dB (``mcep`` mel-cepstra; see the module docstring): frames 1:1, or
    along a DTW path with ``dtw=True`` (then the signals are not cut to a common length)."""
    r, g = np.asarray(ref, np.float64), np.asarray(gen, np.float64)
    if not dtw:
        r, g, _ = align_lengths(r, g)
    cr, energy = sptk_mel_cepstrum(r, sr, order, frame_length, hop, alpha)
    cg, _ = sptk_mel_cepstrum(g, sr, order, frame_length, hop, alpha)
    keep = energy >= energy.max() - silence_db
    if not dtw:
        return float(np.mean(cepstral_distance_db(cr[keep], cg[keep])))
    import librosa

    cr = cr[keep]
    _, path = librosa.sequence.dtw(X=cr[:, 1:].T, Y=cg[:, 1:].T, metric="euclidean")
    return float(np.mean(cepstral_distance_db(cr[path[:, 0]], cg[path[:, 1]])))


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
        out["mcd_sptk_db"] = mel_cepstral_distortion(ref, gen, sr)
    if "lmd" in metrics:
        out["log_mel_db"] = log_mel_distance(ref, gen, sr)
    if "f0" in metrics:
        out.update(f0_metrics(ref, gen, sr))
    return out
