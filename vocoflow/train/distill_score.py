"""Scoring distilled students against their teacher: KL(student || teacher) and the
multi-resolution STFT loss on a dump directory (``vocoflow distill-score``)."""

from __future__ import annotations

import torch

from vocoflow.train.losses import MultiResolutionSTFTLoss, stft_resolutions

__all__ = ["score_systems"]


@torch.no_grad()
def score_systems(teacher, students: dict, dump_dir, teacher_sigma: float = 1.0,
                  resolutions="auto", max_seconds: float | None = None,
                  utterances: int | None = None, seed: int = 0) -> dict:
    """KL(student || teacher) (Monte Carlo, nats per sample) and the multi-resolution STFT loss
    against the real audio, per system, over the utterances of a dump directory.

    ``students`` maps names to models; ``"teacher"`` is added for the teacher's own samples
    (its KL is 0 by definition). Every utterance uses the same unit-normal noise for every
    system (from ``seed`` and the utterance id). Averages are weighted by samples.
    """
    from vocoflow.audio import AudioMelDataset
    from vocoflow.vocoders import noise_for

    ds = AudioMelDataset(dump_dir)
    sr, hop = ds.config.sample_rate, ds.config.hop_length
    res = stft_resolutions(sr) if resolutions in (None, "auto") else resolutions
    stft = MultiResolutionSTFTLoss(res)
    n = len(ds) if utterances is None else min(len(ds), utterances)
    totals: dict[str, dict[str, float]] = {}
    samples = 0
    for i in range(n):
        item = ds[i]
        frames = item["mel"].shape[-1]
        if max_seconds:
            frames = min(frames, max(1, ds.config.segment_frames(int(max_seconds * sr))))
        mel = item["mel"][None, :, :frames].float()
        audio = item["audio"][None, : ds.config.num_samples(frames)].float()
        noise = noise_for(item["utt_id"], seed, (1, frames * hop))
        t = audio.shape[-1]
        samples += t
        systems = {"teacher": None, **students}
        for name, model in systems.items():
            if model is None:
                x = teacher.infer(mel, sigma=teacher_sigma, noise=noise)
                kl = 0.0
            else:
                out = model(noise, mel)
                x = out["audio"]
                kl = float((out["log_q"].sum(-1) - teacher.log_prob(x, mel, sigma=teacher_sigma))[0])
            loss, parts = stft(x, audio)
            acc = totals.setdefault(name, {"kl": 0.0, "stft": 0.0, "stft_sc": 0.0, "stft_logmag": 0.0})
            acc["kl"] += kl
            acc["stft"] += float(loss) * t
            acc["stft_sc"] += parts["sc"] * t
            acc["stft_logmag"] += parts["logmag"] * t
    return {name: {k: v / samples for k, v in acc.items()} | {"utterances": n, "samples": samples}
            for name, acc in totals.items()}
