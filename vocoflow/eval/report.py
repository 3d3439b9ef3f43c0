"""Evaluate systems against references and write a Markdown table, JSON and PNG figures."""

from __future__ import annotations

import json
import logging
import math
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vocoflow.atomic import atomic_open, atomic_write_text
from vocoflow.audio import AudioError, MelConfig, MelSpectrogram, save_wav
from vocoflow.audio.wav_scp import load_wav_entry

from .metrics import align_lengths, evaluate_pair

__all__ = ["griffin_lim_from_mel", "evaluate_systems", "EvalReport", "markdown_table",
           "plot_spectrograms", "METRIC_COLUMNS"]

log = logging.getLogger("vocoflow.eval")

METRIC_COLUMNS = [
    ("pesq", "PESQ-WB ↑"), ("mcd_sptk_db", "MCD (SPTK mcep) dB ↓"), ("log_mel_db", "log-mel dB ↓"),
    ("f0_rmse_hz", "F0 RMSE Hz ↓"), ("vuv_error", "V/UV err ↓"), ("nll", "NLL nats/sample ↓"),
]


def griffin_lim_from_mel(mel_log: np.ndarray, config: MelConfig, n_iter: int = 32,
                         length: int | None = None) -> np.ndarray:
    """Invert a (raw, not normalised) log-mel of ``config`` with Griffin-Lim (librosa)."""
    import librosa

    if config.log == "ln":
        m = np.exp(mel_log)
    elif config.log == "log10":
        m = 10.0 ** mel_log
    else:
        m = mel_log
    m = np.asarray(m, np.float64)
    stft_mag = librosa.feature.inverse.mel_to_stft(
        m, sr=config.sample_rate, n_fft=config.n_fft, power=config.power, fmin=config.fmin,
        fmax=config.f_max, htk=config.mel_scale == "htk", norm=config.norm)
    wav = librosa.griffinlim(stft_mag, n_iter=n_iter, hop_length=config.hop_length,
                             win_length=config.win_length, window=config.window, center=True,
                             random_state=0)
    # Griffin-Lim centres frame t at t*hop, as the centred grid does; the non-centred grid's frame
    # t (padding (n_fft-hop)/2) is centred at t*hop + n_fft/2 - (n_fft-hop)/2: delay by the difference
    shift = 0 if config.center else config.n_fft // 2 - (config.n_fft - config.hop_length) // 2
    wav = np.concatenate([np.zeros(max(0, shift)), wav])
    if length is not None:
        wav = wav[:length] if len(wav) >= length else np.pad(wav, (0, length - len(wav)))
    return wav.astype(np.float32)


def _evaluate_one(args):
    utt, ref_path, gen_path, sr, metrics = args
    try:
        ref, _ = load_wav_entry(ref_path, sr)
        gen, _ = load_wav_entry(gen_path, sr, check=False)
        if gen.size == 0 or not np.isfinite(gen).all():
            raise AudioError(gen_path, "generated audio is empty or not finite")
        diff = len(gen) - len(ref)
        res = evaluate_pair(ref, gen, sr, metrics)
        res["length_diff"] = diff
        return utt, res, None
    except Exception as e:  # listed in the report, not fatal
        return utt, None, f"{type(e).__name__}: {e}"


@dataclass
class EvalReport:
    per_utt: dict = field(default_factory=dict)      # system -> utt -> metrics
    summary: dict = field(default_factory=dict)      # system -> metric -> (mean, std, n)
    failures: list = field(default_factory=list)     # (system, utt, reason)
    warnings: list = field(default_factory=list)

    def to_json(self) -> dict:
        return {"summary": {s: {k: {"mean": m, "std": sd, "n": n} for k, (m, sd, n) in v.items()}
                            for s, v in self.summary.items()},
                "per_utterance": self.per_utt,
                "failures": [{"system": s, "utt": u, "reason": r} for s, u, r in self.failures],
                "warnings": self.warnings}


def _summarise(rows: dict) -> dict:
    out = {}
    keys = sorted({k for r in rows.values() for k in r if k != "length_diff"})
    for k in keys:
        vals = np.array([r[k] for r in rows.values() if k in r and r[k] is not None
                         and not (isinstance(r[k], float) and math.isnan(r[k]))], np.float64)
        if len(vals):
            out[k] = (float(vals.mean()), float(vals.std()), int(len(vals)))
    return out


def markdown_table(summary: dict, extra: dict | None = None) -> str:
    """One row per system, mean ± std of each metric."""
    cols = [(k, name) for k, name in METRIC_COLUMNS
            if any(k in s for s in summary.values()) or (extra and any(k in e for e in extra.values()))]
    lines = ["| system | " + " | ".join(n for _, n in cols) + " | utts |",
             "|---|" + "---|" * len(cols) + "---|"]
    for system, s in summary.items():
        cells = []
        for k, _ in cols:
            if extra and k in extra.get(system, {}):
                cells.append(f"{extra[system][k]:.4f}")
            elif k in s:
                m, sd, _ = s[k]
                cells.append(f"{m:.3f} ± {sd:.3f}")
            else:
                cells.append("–")
        n = max((v[2] for v in s.values()), default=0)
        lines.append(f"| {system} | " + " | ".join(cells) + f" | {n} |")
    return "\n".join(lines) + "\n"


def plot_spectrograms(wavs: dict, sr: int, png: str | Path, title: str = "") -> None:
    """Stack log-magnitude spectrograms of ``{label: wav}`` in one PNG."""
    import librosa
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(wavs), 1, figsize=(10, 2.4 * len(wavs)), sharex=True,
                             squeeze=False)
    for ax, (label, wav) in zip(axes[:, 0], wavs.items()):
        s = librosa.amplitude_to_db(np.abs(librosa.stft(np.asarray(wav, np.float32),
                                                        n_fft=1024, hop_length=256)),
                                    ref=np.max, top_db=80)
        ax.imshow(s, origin="lower", aspect="auto", cmap="magma",
                  extent=(0, len(wav) / sr, 0, sr / 2000))
        ax.set_ylabel("kHz")
        ax.set_title(label, fontsize=9, loc="left")
    axes[-1, 0].set_xlabel("s")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    try:
        with atomic_open(png, "wb") as f:
            fig.savefig(f, format="png", dpi=90)
    finally:
        plt.close(fig)


def evaluate_systems(refs: dict, systems: dict, sample_rate: int, out_dir: str | Path, *,
                     griffin_lim: MelConfig | None = None, metrics=("pesq", "mcd", "lmd", "f0"),
                     n_jobs: int = 1, n_plots: int = 3, extra: dict | None = None,
                     progress: bool = True) -> EvalReport:
    """Compare each system's ``{utt: wav path}`` with ``refs`` ``{utt: wav path}`` (paths or
    ``wav.scp`` values such as a dump's ark entries, read with
    :func:`~vocoflow.audio.wav_scp.load_wav_entry`).

    With ``griffin_lim`` a baseline system "griffin-lim" is synthesised from each reference's
    mel (that front end) into ``out_dir/griffin_lim/`` and scored the same way. ``extra`` adds
    per-system numbers (e.g. held-out NLL) to the table. Missing or unreadable files are listed
    in the report, never fatal.
    """
    from tqdm.auto import tqdm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = EvalReport()
    systems = dict(systems)
    if griffin_lim is not None:
        gl_dir = out / "griffin_lim"
        gl_dir.mkdir(exist_ok=True)
        mel_fn = MelSpectrogram(griffin_lim)
        gl = {}
        for utt, path in tqdm(sorted(refs.items()), desc="griffin-lim", disable=not progress):
            target = gl_dir / f"{utt}.wav"
            try:
                if not target.exists():
                    import torch

                    wav, _ = load_wav_entry(path, griffin_lim.sample_rate)
                    mel = mel_fn(torch.from_numpy(wav)).numpy()
                    save_wav(target, griffin_lim_from_mel(mel, griffin_lim, length=len(wav)),
                             griffin_lim.sample_rate)
                gl[utt] = str(target)
            except Exception as e:
                report.failures.append(("griffin-lim", utt, f"{type(e).__name__}: {e}"))
        systems["griffin-lim"] = gl

    for name, gens in systems.items():
        jobs = []
        for utt in sorted(refs):
            if utt not in gens:
                report.failures.append((name, utt, "no generated file"))
                continue
            jobs.append((utt, refs[utt], gens[utt], sample_rate, tuple(metrics)))
        for utt in sorted(set(gens) - set(refs)):
            report.warnings.append(f"{name}: {utt} has no reference; ignored")
        rows = {}
        if n_jobs > 1 and len(jobs) > 1:
            with ProcessPoolExecutor(n_jobs) as ex:
                results = list(tqdm(ex.map(_evaluate_one, jobs), total=len(jobs),
                                    desc=f"evaluate {name}", disable=not progress))
        else:
            results = [_evaluate_one(j) for j in tqdm(jobs, desc=f"evaluate {name}",
                                                        disable=not progress)]
        for utt, res, err in results:
            if err:
                report.failures.append((name, utt, err))
                continue
            tol = max(1024, int(0.01 * sample_rate))
            if abs(res["length_diff"]) > tol:
                report.warnings.append(f"{name}/{utt}: generated length differs from the "
                                       f"reference by {res['length_diff']} samples")
            rows[utt] = res
        report.per_utt[name] = rows
        report.summary[name] = _summarise(rows)

    # figures: reference vs every system for the first utterances they all have
    common = sorted(set(refs).intersection(*[set(r) for r in report.per_utt.values()])
                    if report.per_utt else [])
    for utt in common[:n_plots]:
        try:
            wavs = {"reference": load_wav_entry(refs[utt], sample_rate)[0]}
            for name, gens in systems.items():
                w, _ = load_wav_entry(gens[utt], sample_rate, check=False)
                wavs[name] = align_lengths(wavs["reference"], w)[1]
            plot_spectrograms(wavs, sample_rate, out / f"spectrogram_{utt}.png", title=utt)
        except Exception as e:
            report.warnings.append(f"plot {utt}: {e}")

    table = markdown_table(report.summary, extra)
    lines = ["# Evaluation", "", table]
    if report.failures:
        lines += ["", f"## Failures ({len(report.failures)})", ""]
        lines += [f"- {s} / {u}: {r}" for s, u, r in report.failures]
    if report.warnings:
        lines += ["", f"## Warnings ({len(report.warnings)})", ""]
        lines += [f"- {w}" for w in report.warnings]
    lines += ["", "Metrics: PESQ wide-band at 16 kHz; MCD (dB) between SPTK mel-cepstra "
              "(pysptk mcep, order 24, c0 left out) over the reference's non-silent frames, "
              "frames 1:1 (no DTW); log-mel distance in "
              "dB; F0 RMSE (Hz) over frames voiced in both and V/UV error rate (pYIN); NLL in "
              "nats per sample on the normalised features. Lengths are cut to the shorter "
              "signal.", ""]
    data = report.to_json()
    if extra:
        data["extra"] = extra
    atomic_write_text(out / "results.md", "\n".join(lines))
    atomic_write_text(out / "results.json", json.dumps(data, indent=2))
    return report

