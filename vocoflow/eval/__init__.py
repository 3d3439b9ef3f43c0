"""Evaluation: objective metrics of generated speech and reports."""

from .metrics import (
    align_lengths,
    evaluate_pair,
    f0_metrics,
    log_mel_distance,
    mel_cepstral_distortion,
    pesq_wb,
    warped_cepstral_distortion,
)

__all__ = ["align_lengths", "f0_metrics", "log_mel_distance", "mel_cepstral_distortion",
           "warped_cepstral_distortion", "pesq_wb", "evaluate_pair"]
