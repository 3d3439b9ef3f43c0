"""Shared helpers for checking bijectors against independent computations."""

from __future__ import annotations

import torch


def randomize(module: torch.nn.Module, std: float = 0.3, seed: int = 0) -> torch.nn.Module:
    """Move every parameter away from its (often identity) initialisation."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * std)
    return module


def jacobian_logdet(fn, x: torch.Tensor) -> torch.Tensor:
    """``log|det d fn(x)_b / d x_b|`` per batch item from the full autograd Jacobian."""
    b = x.shape[0]
    d = x[0].numel()

    def flat(inp):
        return fn(inp.reshape(x.shape)).reshape(b, -1)

    jac = torch.autograd.functional.jacobian(flat, x.reshape(b, d))  # (b, d, b, d)
    out = []
    for i in range(b):
        block = jac[i, :, i, :]
        out.append(torch.linalg.slogdet(block)[1])
        # the map must not mix batch items
        others = [j for j in range(b) if j != i]
        if others:
            assert jac[i, :, others, :].abs().max() == 0, "batch items are mixed"
    return torch.stack(out)
