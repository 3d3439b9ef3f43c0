"""Invertible image steganography (HiNet, Jing et al., 2021): hide one image inside another
with a Haar wavelet front end and invertible hiding blocks of the bijector core.

Built only from :mod:`vocoflow.flows` (and scikit-image for SSIM/PSNR).
"""

from .evaluate import consecutive_pairs, evaluate_pairs, grid_panels, hide_and_reveal
from .losses import LossWeights, hiding_losses
from .metrics import MAX_PSNR_DB, psnr, quantize, ssim
from .model import (
    STEGO_MODELS,
    HidingBlock,
    HidingNetwork,
    HidingOutput,
    build_hiding_network,
    load_hiding_network,
)

__all__ = [
    "HidingBlock", "HidingNetwork", "HidingOutput", "STEGO_MODELS", "build_hiding_network",
    "load_hiding_network", "LossWeights", "hiding_losses", "psnr", "ssim", "quantize",
    "MAX_PSNR_DB", "consecutive_pairs", "hide_and_reveal", "evaluate_pairs", "grid_panels",
]
