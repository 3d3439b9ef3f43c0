"""Evaluate a hiding network on pairs of a test set: PSNR/SSIM of the container against the
cover and of the recovered secret against the secret, and the panels of a result grid."""

from __future__ import annotations

import numpy as np
import torch

from .metrics import psnr, quantize, ssim

__all__ = ["consecutive_pairs", "hide_and_reveal", "evaluate_pairs", "grid_panels"]


def consecutive_pairs(n_images: int, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(cover_index, secret_index)``: image ``i`` hides image ``i + 1`` (``i < n - 1``).

    >>> [t.tolist() for t in consecutive_pairs(4)]
    [[0, 1, 2], [1, 2, 3]]
    """
    if n_images < 2:
        raise ValueError(f"pairs need at least 2 images, got {n_images}")
    n = n_images - 1 if not limit else min(int(limit), n_images - 1)
    idx = torch.arange(n)
    return idx, idx + 1


@torch.no_grad()
def hide_and_reveal(model, cover_u8: torch.Tensor, secret_u8: torch.Tensor, seed: int = 0,
                    quantized: bool = True, first_index: int = 0) -> dict[str, torch.Tensor]:
    """Hide uint8 ``secret_u8`` in uint8 ``cover_u8`` and reveal it again, as ``vocoflow hide`` and
    ``vocoflow reveal`` do: the container is rounded to 8 bits (``quantized``; else the float
    container is revealed), ``r`` is replaced by ``N(0, I)`` noise drawn per pair from
    ``seed`` and the pair's index (``first_index`` + position), so results do not depend on the
    batch size. Returns uint8 ``container`` and ``recovered``."""
    p = next(model.parameters())
    cover = cover_u8.to(p.device, p.dtype) / 255.0
    secret = secret_u8.to(p.device, p.dtype) / 255.0
    container, _ = model.hide(cover, secret)
    container_u8 = quantize(container).cpu()
    shown = container_u8.to(p.device, p.dtype) / 255.0 if quantized else container
    shape = model.lost_shape(tuple(cover.shape[1:]))
    noise = torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(
        seed * 1_000_003 + first_index + i), dtype=p.dtype) for i in range(cover.shape[0])])
    recovered, _ = model.reveal(shown, noise.to(p.device))
    return {"container": container_u8, "recovered": quantize(recovered).cpu()}


def evaluate_pairs(model, images: torch.Tensor, limit: int | None = None, batch_size: int = 256,
                   seed: int = 0, quantized: bool = True, progress: bool = False) -> dict:
    """Mean PSNR (dB) and SSIM over the consecutive pairs of uint8 ``images`` (see
    :func:`consecutive_pairs`, :func:`hide_and_reveal`): ``container`` vs cover and
    ``recovered`` vs secret, with their standard errors."""
    ci, si = consecutive_pairs(images.shape[0], limit)
    starts = range(0, len(ci), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="evaluate", dynamic_ncols=True)
    values = {k: [] for k in ("psnr_container", "ssim_container", "psnr_recovered", "ssim_recovered")}
    for s in starts:
        cover, secret = images[ci[s:s + batch_size]], images[si[s:s + batch_size]]
        out = hide_and_reveal(model, cover, secret, seed, quantized, first_index=s)
        values["psnr_container"].append(psnr(cover, out["container"]))
        values["ssim_container"].append(ssim(cover, out["container"]))
        values["psnr_recovered"].append(psnr(secret, out["recovered"]))
        values["ssim_recovered"].append(ssim(secret, out["recovered"]))
    res = {"pairs": int(len(ci)), "quantized_container": bool(quantized), "seed": int(seed)}
    for k, v in values.items():
        v = np.concatenate(v)
        res[k] = float(v.mean())
        res[k + "_stderr"] = float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0
    return res


def grid_panels(model, images: torch.Tensor, n_pairs: int = 8, seed: int = 0,
                residual_gain: float = 10.0) -> torch.Tensor:
    """uint8 ``(5 * n_pairs, C, H, W)``: per pair (a row of five) the cover, the 8-bit container,
    the secret, the recovered secret and ``residual_gain * |container - cover|`` (clipped)."""
    ci, si = consecutive_pairs(images.shape[0], n_pairs)
    cover, secret = images[ci], images[si]
    out = hide_and_reveal(model, cover, secret, seed)
    residual = ((out["container"].float() - cover.float()).abs() * residual_gain).round()
    residual = residual.clamp(0, 255).to(torch.uint8)
    rows = torch.stack([cover, out["container"], secret, out["recovered"], residual], dim=1)
    return rows.reshape(-1, *images.shape[1:])
