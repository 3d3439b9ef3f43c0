"""Measured exactness of every bijector (float64): max reconstruction error and max log-det
error against the autograd Jacobian, over the layer cases of ``tests/test_flows.py`` and the
i-ResNet block.

    python benchmarks/exactness.py [--seeds 3] [--markdown]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from flowcheck import jacobian_logdet, randomize  # noqa: E402
from test_flows import CASES, build  # noqa: E402
from vocoflow.flows import ResidualBlock  # noqa: E402


def measure(layer, x, cond):
    z, ld = layer(x, cond)
    x_rec, ld_inv = layer.inverse(z, cond)
    ref = jacobian_logdet(lambda i: layer(i, cond)[0], x)
    return ((x_rec - x).abs().max().item(), (ld - ref).abs().max().item(),
            (ld_inv + ld).abs().max().item())


def residual_cases():
    for ndim, shape in ((0, (3, 6)), (1, (2, 3, 5)), (2, (2, 2, 3, 3))):
        torch.manual_seed(0)
        block = randomize(ResidualBlock(shape[1], hidden=8, ndim=ndim, logdet="exact").double(),
                          std=0.3)
        block.eval()
        yield f"residual-exact-ndim{ndim}", block, torch.randn(shape, dtype=torch.float64), None


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args(argv)
    torch.set_default_dtype(torch.float64)
    rows = []
    for name in sorted(CASES):
        worst = [0.0, 0.0, 0.0]
        for seed in range(args.seeds):
            layer, x, cond, _ = build(name, seed=seed)
            worst = [max(a, b) for a, b in zip(worst, measure(layer, x, cond))]
        rows.append((name, *worst))
    for name, layer, x, cond in residual_cases():
        rows.append((name, *measure(layer, x, cond)))
    if args.markdown:
        print("| layer case | max recon error | max log-det error | max fwd+inv log-det |")
        print("|---|---|---|---|")
        for r in rows:
            print(f"| {r[0]} | {r[1]:.1e} | {r[2]:.1e} | {r[3]:.1e} |")
    else:
        print(f"{'layer case':28} {'recon':>9} {'logdet':>9} {'fwd+inv':>9}")
        for r in rows:
            print(f"{r[0]:28} {r[1]:9.1e} {r[2]:9.1e} {r[3]:9.1e}")


if __name__ == "__main__":
    main()
