"""Helpers for the audio tests: synthetic signals, WAV files and tiny Kaldi data directories.

Everything is generated in a temporary directory; nothing needs the network or the corpus.
"""

from __future__ import annotations

import os

import numpy as np
import soundfile as sf


def tone(sr: int = 16000, seconds: float = 1.0, freq: float = 440.0, amp: float = 0.3, seed: int = 0) -> np.ndarray:
    """A sine with a little noise (float32)."""
    t = np.arange(int(round(sr * seconds))) / sr
    rng = np.random.default_rng(seed)
    x = amp * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(len(t))
    return x.astype(np.float32)


def chirp_noise(sr: int = 16000, seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    """A rising chirp plus noise: energy over the whole band (float64)."""
    t = np.arange(int(round(sr * seconds))) / sr
    rng = np.random.default_rng(seed)
    f0, f1 = 60.0, sr * 0.45
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * seconds))
    return 0.4 * np.sin(phase) + 0.05 * rng.standard_normal(len(t))


def write_wav(path, x, sr: int = 16000, subtype: str = "PCM_16") -> str:
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    sf.write(path, x, sr, subtype=subtype)
    return path


def write_lines(path, lines) -> str:
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))
    return path


def make_good_data_dir(root, n: int = 4, sr: int = 16000, seconds: float = 0.6, speaker: str = "spk1") -> str:
    """``root/data`` with ``n`` short tone utterances u0..u{n-1} of one speaker (sorted)."""
    root = os.fspath(root)
    wav, u2s, text = {}, {}, {}
    for i in range(n):
        utt = f"u{i}"
        path = write_wav(os.path.join(root, "wav", f"{utt}.wav"), tone(sr, seconds + 0.1 * i, 200 + 60 * i, seed=i), sr)
        wav[utt], u2s[utt], text[utt] = path, speaker, f"utterance {i}"
    from vocoflow.audio import write_data_dir

    data = os.path.join(root, "data")
    write_data_dir(data, wav, u2s, text)
    return data


def make_tone_dumps(root, counts=(("train", 4), ("dev", 2)), seconds=0.5, freq=180.0, step=70.0,
                    pitch=None) -> dict:
    """Normalised dump dirs ``root/norm/<set>`` of short tones (utterance ``i`` of a set lasts
    ``seconds + 0.1 i`` at ``freq + step i`` Hz), with statistics of the first set and, with a
    :class:`~vocoflow.audio.pitch.PitchConfig`, F0 tracks. Returns ``{set: Path}``."""
    from pathlib import Path

    from vocoflow.audio import compute_stats, get_preset, normalize, preprocess, write_data_dir

    root = Path(root)
    cfg = get_preset("asterisk16k")
    for name, n in counts:
        wav = {f"{name}{i}": write_wav(root / name / f"{name}{i}.wav",
                                       tone(16000, seconds + 0.1 * i, freq + step * i, seed=i))
               for i in range(n)}
        write_data_dir(root / "data" / name, wav, {k: "s" for k in wav})
        assert preprocess(root / "data" / name, root / "raw" / name, cfg, pitch=pitch).n_ok == n
    first = counts[0][0]
    compute_stats(root / "raw" / first)
    out = {}
    for name, _ in counts:
        normalize(root / "raw" / name, root / "raw" / first / "stats.npz", root / "norm" / name)
        out[name] = root / "norm" / name
    return out
