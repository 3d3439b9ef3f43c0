"""Image grids and PNG files (encoded and read by Pillow)."""

from __future__ import annotations

import io
from pathlib import Path

import torch

from vocoflow.atomic import atomic_write_bytes

__all__ = ["make_grid", "write_png", "read_png_size", "read_png"]


def make_grid(images: torch.Tensor, nrow: int = 8, padding: int = 2, pad_value: int = 255,
              scale: int = 1) -> torch.Tensor:
    """Tile uint8 images ``(N, C, H, W)`` into one ``(C, H', W')`` image, ``nrow`` per row,
    each magnified ``scale`` times (nearest neighbour).

    >>> import torch
    >>> make_grid(torch.zeros(5, 1, 2, 2, dtype=torch.uint8), nrow=3, padding=1).shape
    torch.Size([1, 7, 10])
    """
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError("make_grid takes uint8 (N, C, H, W)")
    if scale > 1:
        images = images.repeat_interleave(scale, 2).repeat_interleave(scale, 3)
    n, c, h, w = images.shape
    ncol = min(nrow, n)
    rows = (n + ncol - 1) // ncol
    grid = torch.full((c, padding + rows * (h + padding), padding + ncol * (w + padding)),
                      pad_value, dtype=torch.uint8)
    for k in range(n):
        r, q = divmod(k, ncol)
        y, x = padding + r * (h + padding), padding + q * (w + padding)
        grid[:, y:y + h, x:x + w] = images[k]
    return grid


def write_png(path: str | Path, image: torch.Tensor) -> None:
    """Write a uint8 ``(1, H, W)``/``(H, W)`` (grey) or ``(3, H, W)`` (RGB) image as PNG
    (Pillow encodes it; the file is written atomically)."""
    from PIL import Image

    if image.dim() == 2:
        image = image.unsqueeze(0)
    if image.dtype != torch.uint8 or image.dim() != 3 or image.shape[0] not in (1, 3):
        raise ValueError("write_png takes uint8 (H, W), (1, H, W) or (3, H, W)")
    array = image.permute(1, 2, 0).contiguous().numpy()
    pil = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)
    buf = io.BytesIO()
    pil.save(buf, format="PNG", optimize=True)
    atomic_write_bytes(path, buf.getvalue())


def read_png_size(path: str | Path) -> tuple[int, int]:
    """``(width, height)`` of a PNG file (read by Pillow); ``ValueError`` naming the file when
    it is not a PNG image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if im.format != "PNG":
                raise ValueError(f"{path}: not a PNG file ({im.format})")
            return im.size
    except UnidentifiedImageError:
        raise ValueError(f"{path}: not a PNG file") from None


def read_png(path: str | Path) -> torch.Tensor:
    """A PNG file as uint8 ``(1, H, W)`` (grey) or ``(3, H, W)`` (RGB), read by Pillow:
    grey(-alpha) images give one channel, RGB(A) and palette images three (alpha dropped);
    ``ValueError`` naming the file when it is not a PNG image or has another mode."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if im.format != "PNG":
                raise ValueError(f"{path}: not a PNG file ({im.format})")
            mode = {"L": "L", "LA": "L", "RGB": "RGB", "RGBA": "RGB", "P": "RGB"}.get(im.mode)
            if mode is None:
                raise ValueError(f"{path}: PNG mode {im.mode} is not supported (8-bit grey or RGB)")
            array = np.asarray(im.convert(mode), dtype=np.uint8)
    except UnidentifiedImageError:
        raise ValueError(f"{path}: not a PNG file") from None
    except OSError as e:
        raise ValueError(f"{path}: unreadable PNG ({e})") from None
    t = torch.from_numpy(array.copy())
    return t.unsqueeze(0) if t.dim() == 2 else t.permute(2, 0, 1).contiguous()
