"""A small end-to-end demo: fit a RealNVP-style flow to 2-D "two moons" data by maximum
likelihood, then write samples, a density plot and the loss curve.

It exercises the whole core (couplings, ActNorm, permutations, ``Flow``) in about a minute on
2 CPU cores. The full vocoder recipe (``egs/asterisk_en/voc1``) is the project's main job once
it exists.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from vocoflow.atomic import atomic_open, atomic_write_text
from vocoflow.flows import ActNorm, AffineCoupling, Flow, Normal, Reverse, Sequential

__all__ = ["two_moons", "build_toy_flow", "run_demo"]


def two_moons(n: int, noise: float = 0.08, generator: torch.Generator | None = None):
    """``n`` points of the two-moons data set, standardised roughly to unit scale."""
    u = torch.rand(n, generator=generator) * math.pi
    upper = torch.rand(n, generator=generator) < 0.5
    x = torch.where(upper, torch.cos(u), 1 - torch.cos(u))
    y = torch.where(upper, torch.sin(u), 0.5 - torch.sin(u))
    pts = torch.stack([x - 0.5, y - 0.25], dim=1) * 1.5
    return pts + noise * torch.randn(pts.shape, generator=generator)


def build_toy_flow(n_steps: int = 8, hidden: int = 64) -> Flow:
    layers = []
    for _ in range(n_steps):
        layers += [ActNorm(2), AffineCoupling(2, ndim=0, hidden=hidden), Reverse()]
    return Flow(Normal(), Sequential(*layers))


def run_demo(out_dir: str | Path, steps: int = 1500, batch: int = 512, seed: int = 0,
             lr: float = 2e-3, progress: bool = True) -> dict:
    """Train, evaluate and plot; returns the summary that is also written as ``summary.json``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    flow = build_toy_flow()
    opt = torch.optim.Adam(flow.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    test = two_moons(4096, generator=torch.Generator().manual_seed(seed + 1))
    losses = []
    for _ in tqdm(range(steps), desc="fitting two moons", disable=not progress):
        loss = flow.nll(two_moons(batch, generator=g))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(flow.parameters(), 10.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
    flow.eval()
    with torch.no_grad():
        test_nll = flow.nll(test).item()
        samples = flow.sample((4096, 2), generator=torch.Generator().manual_seed(seed + 2))
        z, _ = flow(test)
        recon = (flow.bijector.inverse(z)[0] - test).abs().max().item()
        grid = torch.linspace(-3, 3, 200)
        gx, gy = torch.meshgrid(grid, grid, indexing="xy")
        dens = flow.log_prob(torch.stack([gx.flatten(), gy.flatten()], 1)).exp().reshape(200, 200)

    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    axes[0].scatter(test[:, 0], test[:, 1], s=2, alpha=0.4)
    axes[0].set_title("data")
    axes[1].imshow(dens.numpy(), origin="lower", extent=(-3, 3, -3, 3), cmap="magma")
    axes[1].set_title(f"model density (test NLL {test_nll:.3f} nats/dim)")
    axes[2].scatter(samples[:, 0], samples[:, 1], s=2, alpha=0.4, color="C1")
    axes[2].set_title("samples")
    for ax in (axes[0], axes[2]):
        ax.set_xlim(-3, 3)
        ax.set_ylim(-3, 3)
    fig.tight_layout()
    with atomic_open(out / "samples.png", "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(losses, lw=0.8)
    ax.set_xlabel("step")
    ax.set_ylabel("train NLL (nats/dim)")
    fig.tight_layout()
    with atomic_open(out / "loss.png", "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)

    np.savetxt(out / "samples.txt", samples.numpy()[:1000], fmt="%.5f")
    summary = {"steps": steps, "final_train_nll": float(np.mean(losses[-50:])),
               "test_nll_nats_per_dim": test_nll, "max_reconstruction_error": recon}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    return summary
