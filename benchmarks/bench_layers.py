"""Forward+backward time of every bijector on an audio-shaped and an image-shaped input.

    python benchmarks/bench_layers.py [--threads 2] [--repeats 5] [--json out.json]

Times are medians over ``--repeats`` runs after one warm-up. Compare runs made on the same
machine in the same conditions; the ``ratio`` column is each layer's time divided by that of a
plain 1x1 convolution measured in the same run, which is what stays comparable across machines.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from vocoflow.flows import (
    IAF,
    ActNorm,
    AdditiveCoupling,
    AffineCoupling,
    Invertible1x1Conv,
    MixLogisticCoupling,
    ResidualBlock,
    Reverse,
    Scale,
    Shuffle,
    Split,
    Squeeze,
)

AUDIO = (4, 8, 2000)
IMAGE = (8, 3, 32, 32)


def audio_layers():
    c = AUDIO[1]
    return {
        "Invertible1x1Conv": lambda: Invertible1x1Conv(c),
        "Invertible1x1Conv(LU)": lambda: Invertible1x1Conv(c, lu=True),
        "AdditiveCoupling": lambda: AdditiveCoupling(c),
        "AffineCoupling": lambda: AffineCoupling(c),
        "AffineCoupling+cond": lambda: AffineCoupling(c, cond_channels=80),
        "MixLogisticCoupling(K=4)": lambda: MixLogisticCoupling(c, n_components=4),
        "ActNorm": lambda: ActNorm(c),
        "Scale": lambda: Scale(c),
        "Reverse": lambda: Reverse(),
        "Shuffle": lambda: Shuffle(c),
        "Squeeze(2)": lambda: Squeeze(2),
        "Split(4, Affine)": lambda: Split(4, AffineCoupling(c - 4)),
        "ResidualBlock(series)": lambda: ResidualBlock(c, logdet="series", n_series_terms=5),
        "ResidualBlock(unbiased)": lambda: ResidualBlock(c, logdet="unbiased"),
        "IAF(sampling dir)": lambda: IAF(c),
    }


def image_layers():
    c = IMAGE[1]
    return {
        "Invertible1x1Conv": lambda: Invertible1x1Conv(c),
        "Invertible1x1Conv(LU)": lambda: Invertible1x1Conv(c, lu=True),
        "AdditiveCoupling(checker)": lambda: AdditiveCoupling(c, mask="checkerboard", ndim=2),
        "AffineCoupling(checker)": lambda: AffineCoupling(c, mask="checkerboard", ndim=2),
        "AffineCoupling(channel)": lambda: AffineCoupling(c, ndim=2),
        "MixLogisticCoupling(checker)": lambda: MixLogisticCoupling(c, mask="checkerboard",
                                                                    ndim=2),
        "ActNorm": lambda: ActNorm(c),
        "Squeeze(2)": lambda: Squeeze(2),
        "ResidualBlock(series)": lambda: ResidualBlock(c, ndim=2, logdet="series",
                                                       n_series_terms=5),
    }


def time_layer(factory, shape, repeats, cond_shape=None):
    layer = factory()
    x = torch.randn(shape)
    cond = torch.randn(cond_shape) if cond_shape else None
    is_iaf = isinstance(layer, IAF)

    def run():
        xi = x.clone().requires_grad_(True)
        z, ld = layer.inverse(xi, cond) if is_iaf else layer(xi, cond)
        ((z ** 2).mean() - ld.mean()).backward()

    run()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    for kind, shape, layers in (("audio", AUDIO, audio_layers()), ("image", IMAGE, image_layers())):
        base = None
        for name, factory in layers.items():
            cond_shape = (AUDIO[0], 80, AUDIO[2]) if name.endswith("+cond") else None
            t = time_layer(factory, shape, args.repeats, cond_shape)
            base = base or t
            rows.append({"input": kind, "shape": list(shape), "layer": name,
                         "fwd_bwd_ms": 1000 * t, "ratio": t / base})
    print(f"{'input':6} {'layer':30} {'fwd+bwd ms':>11} {'x 1x1conv':>10}")
    for r in rows:
        print(f"{r['input']:6} {r['layer']:30} {r['fwd_bwd_ms']:11.2f} {r['ratio']:10.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": args.threads, "torch": torch.__version__, "rows": rows}, f,
                      indent=2)


if __name__ == "__main__":
    main()
