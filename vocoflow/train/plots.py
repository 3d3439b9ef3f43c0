"""Loss-curve PNG from a trainer's ``train_log.jsonl``."""

from __future__ import annotations

import json
from pathlib import Path

from vocoflow.atomic import atomic_open

__all__ = ["plot_training_log"]


def plot_training_log(log_path: str | Path, png_path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train, dev = {}, {}
    for line in Path(log_path).read_text().splitlines():
        if not line.strip():
            continue
        r = json.loads(line)
        for k, v in r.items():
            if k in ("step", "epoch", "lr", "grad_norm") or not isinstance(v, (int, float)):
                continue
            (dev if k.startswith("dev_") else train).setdefault(k, []).append((r["step"], v))
    fig, ax = plt.subplots(figsize=(7, 4))
    for k, pts in train.items():
        xs, ys = zip(*pts)
        ax.plot(xs, ys, lw=0.8, label=k)
    for k, pts in dev.items():
        xs, ys = zip(*pts)
        ax.plot(xs, ys, "o-", ms=3, label=k)
    ax.set_xlabel("step")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    try:
        with atomic_open(png_path, "wb") as f:
            fig.savefig(f, format="png", dpi=100)
    finally:
        plt.close(fig)
