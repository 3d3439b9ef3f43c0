"""Image-fidelity metrics of steganography: PSNR and SSIM of 8-bit images (scikit-image)."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["psnr", "ssim", "MAX_PSNR_DB", "quantize"]

# an exact match has infinite PSNR; it counts as this many dB (as in HiNet's evaluation)
MAX_PSNR_DB = 100.0


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Floats in ``[0, 1]`` -> uint8 (rounded, clipped): what a PNG file carries.

    >>> quantize(torch.tensor([-0.1, 0.5, 1.2])).tolist()
    [0, 128, 255]
    """
    return (x.detach() * 255.0).round().clamp(0, 255).to(torch.uint8)


def _pairs(reference, test):
    a = torch.as_tensor(reference).detach().cpu().numpy().astype(np.float64)
    b = torch.as_tensor(test).detach().cpu().numpy().astype(np.float64)
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f"expected two (N, C, H, W) batches of one shape, got {a.shape} and {b.shape}")
    return a, b


def psnr(reference, test, data_range: float = 255.0) -> np.ndarray:
    """Per-image peak signal-to-noise ratio in dB of ``(N, C, H, W)`` batches,
    ``10 log10(data_range^2 / MSE)`` over all of an image's values (scikit-image's
    ``peak_signal_noise_ratio``); an exact match counts as :data:`MAX_PSNR_DB`.

    >>> import torch
    >>> a = torch.zeros(1, 1, 4, 4)
    >>> psnr(a, a + 25.5).round(6).tolist(), psnr(a, a).tolist()
    ([20.0], [100.0])
    """
    from skimage.metrics import peak_signal_noise_ratio

    a, b = _pairs(reference, test)
    out = np.empty(a.shape[0])
    for i in range(a.shape[0]):
        if np.array_equal(a[i], b[i]):
            out[i] = MAX_PSNR_DB
        else:
            out[i] = min(MAX_PSNR_DB, peak_signal_noise_ratio(a[i], b[i], data_range=data_range))
    return out


def ssim(reference, test, data_range: float = 255.0) -> np.ndarray:
    """Per-image structural similarity of ``(N, C, H, W)`` batches with the settings of Wang et
    al. (2004): an 11x11 Gaussian window of sigma 1.5, population (co)variances, K1 = 0.01,
    K2 = 0.03 (scikit-image's ``structural_similarity`` with ``gaussian_weights=True``,
    ``sigma=1.5``, ``use_sample_covariance=False``), the mean SSIM map over the valid window
    positions, averaged over channels. Images need at least 11x11 pixels.

    >>> import torch
    >>> a = torch.arange(256.).reshape(1, 1, 16, 16)
    >>> ssim(a, a).tolist()
    [1.0]
    """
    from skimage.metrics import structural_similarity

    a, b = _pairs(reference, test)
    if min(a.shape[2:]) < 11:
        raise ValueError(f"SSIM with an 11x11 Gaussian window needs images of at least 11x11 "
                         f"pixels, got {a.shape[2]}x{a.shape[3]}")
    out = np.empty(a.shape[0])
    for i in range(a.shape[0]):
        out[i] = np.mean([structural_similarity(a[i, c], b[i, c], data_range=data_range,
                                                gaussian_weights=True, sigma=1.5,
                                                use_sample_covariance=False)
                          for c in range(a.shape[1])])
    return out
