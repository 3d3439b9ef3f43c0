"""Image grids and a dependency-free PNG writer (zlib from the standard library)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import torch

from vocoflow.atomic import atomic_write_bytes

__all__ = ["make_grid", "write_png", "read_png_size"]


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


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_png(path: str | Path, image: torch.Tensor) -> None:
    """Write a uint8 ``(1, H, W)``/``(H, W)`` (grey) or ``(3, H, W)`` (RGB) image as PNG."""
    if image.dim() == 2:
        image = image.unsqueeze(0)
    if image.dtype != torch.uint8 or image.dim() != 3 or image.shape[0] not in (1, 3):
        raise ValueError("write_png takes uint8 (H, W), (1, H, W) or (3, H, W)")
    c, h, w = image.shape
    rows = image.permute(1, 2, 0).reshape(h, w * c).contiguous()
    raw = torch.cat([torch.zeros(h, 1, dtype=torch.uint8), rows], dim=1)  # filter type 0
    header = struct.pack(">IIBBBBB", w, h, 8, 0 if c == 1 else 2, 0, 0, 0)
    data = (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(raw.numpy().tobytes(), 9)) + _chunk(b"IEND", b""))
    atomic_write_bytes(path, data)


def read_png_size(path: str | Path) -> tuple[int, int]:
    """``(width, height)`` from a PNG header."""
    with open(path, "rb") as f:
        head = f.read(24)
    if head[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path}: not a PNG file")
    return struct.unpack(">II", head[16:24])
