"""HiNet's training objective: guide (cover fidelity), reconstruction (recovery) and
low-frequency wavelet losses."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from .model import HidingOutput

__all__ = ["LossWeights", "hiding_losses"]


@dataclass(frozen=True)
class LossWeights:
    """Weights of the three terms (Jing et al., 2021, HiNet; the values of the authors'
    released configuration: guide 1, reconstruction 5, low-frequency 1).

    ``total = guide * ||container - cover||^2 + reconstruction * ||recovered - secret||^2
    + low_frequency * ||LL(container) - LL(cover)||^2``; each squared error is a mean over
    elements (HiNet sums them; the ratio of the terms is the same, only the scale of the
    learning rate differs).

    >>> LossWeights.from_dict({"reconstruction": 2}).reconstruction
    2.0
    """

    guide: float = 1.0
    reconstruction: float = 5.0
    low_frequency: float = 1.0

    @classmethod
    def from_dict(cls, d: dict | None) -> "LossWeights":
        d = dict(d or {})
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"loss: unknown weight(s) {unknown} (known: {sorted(names)})")
        out = {}
        for k, v in d.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise ValueError(f"loss.{k}: expected a number >= 0, got {v!r}")
            out[k] = float(v)
        return cls(**out)


def hiding_losses(out: HidingOutput, cover: torch.Tensor, secret: torch.Tensor,
                  weights: LossWeights = LossWeights()) -> dict[str, torch.Tensor]:
    """``{"guide", "reconstruction", "low_frequency", "total"}`` (scalar tensors) of one pass.

    >>> import torch
    >>> from vocoflow.steganography import HidingNetwork
    >>> net = HidingNetwork(1, blocks=1, hidden=4)
    >>> c, s = torch.rand(2, 3, 1, 4, 4)  # a new network is the identity: container = cover
    >>> losses = hiding_losses(net(c, s, torch.zeros(3, 4, 2, 2)), c, s)
    >>> bool(losses["guide"] < 1e-10), bool(torch.isclose(losses["reconstruction"], (s ** 2).mean()))
    (True, True)
    """
    guide = torch.mean((out.container - cover) ** 2)
    reconstruction = torch.mean((out.recovered - secret) ** 2)
    low = torch.mean((out.container_ll - out.cover_ll) ** 2)
    total = (weights.guide * guide + weights.reconstruction * reconstruction
             + weights.low_frequency * low)
    return {"guide": guide, "reconstruction": reconstruction, "low_frequency": low, "total": total}
