"""Peak training memory of residual flows by log-det gradient path (``ResidualBlock.logdet_grad``).

    python benchmarks/bench_logdet_memory.py [--n-terms 8] [--blocks 4] [--hidden 32]
        [--size 16] [--batch 8] [--arms backprop neumann neumann_memory_efficient] [--json out.json]

Every arm is the same model (``--blocks`` residual blocks on ``(batch, 4, size, size)`` images,
``--hidden`` channels, same seed, so the same weights and the same input) trained for one step
with the truncated series of ``--n-terms`` terms and one Rademacher probe, each in a fresh
subprocess. Two measures of the step (forward, backward, Adam):

* ``peak_mib``: the peak of the memory held by tensors, from ``torch.profiler`` with
  ``profile_memory=True`` (every allocation and free, summed in time order); it is what the
  gradient path changes, free of the allocator's caching;
* ``maxrss_mib``: the growth of the process's peak resident set (``ru_maxrss``) over the step.

``ratio`` divides each arm's ``peak_mib`` by that of ``backprop`` measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

from vocoflow.flows import ResidualBlock, Sequential

ARMS = ("backprop", "neumann", "neumann_memory_efficient")


def build(args, arm: str) -> Sequential:
    torch.manual_seed(0)
    blocks = [
        ResidualBlock(4, hidden=args.hidden, ndim=2, logdet="series", n_series_terms=args.n_terms,
                      hutchinson="rademacher", logdet_grad=arm, activation=args.activation)
        for _ in range(args.blocks)
    ]
    return Sequential(*blocks).train()


def _peak_tensor_bytes(prof) -> int:
    """Peak of the running sum of the profiler's allocation (+) and free (-) records, relative
    to the memory held when profiling started."""
    records = sorted(
        (e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
        if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU
    )
    if not records:
        raise RuntimeError("torch.profiler recorded no allocations (profile_memory=True unsupported?)")
    live = peak = 0
    for _, nbytes in records:
        live += nbytes
        peak = max(peak, live)
    return peak


def child(args, arm: str) -> dict:
    torch.set_num_threads(args.threads)
    model = build(args, arm)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(args.batch, 4, args.size, args.size, generator=torch.Generator().manual_seed(1))

    def step():
        opt.zero_grad()
        z, logdet = model(x)
        loss = 0.5 * z.square().mean() - logdet.mean() / x[0].numel()
        loss.backward()
        opt.step()
        return float(loss)

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        loss = step()
    seconds = time.perf_counter() - start
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {
        "arm": arm, "peak_mib": _peak_tensor_bytes(prof) / 2**20, "maxrss_mib": (rss1 - rss0) / 1024,
        "seconds": seconds, "loss": loss,
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-terms", type=int, default=8)
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--activation", default="lipswish")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    parser.add_argument("--json", help="write the rows here")
    parser.add_argument("--child", choices=ARMS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args, args.child)))
        return 0
    passthrough = [f"--n-terms={args.n_terms}", f"--blocks={args.blocks}", f"--hidden={args.hidden}",
                   f"--size={args.size}", f"--batch={args.batch}", f"--activation={args.activation}",
                   f"--threads={args.threads}"]
    rows = []
    for arm in args.arms:
        proc = subprocess.run([sys.executable, __file__, *passthrough, "--child", arm],
                              capture_output=True, text=True)
        if proc.returncode:
            print(proc.stderr, file=sys.stderr)
            return proc.returncode
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    ref = next((r["peak_mib"] for r in rows if r["arm"] == "backprop"), None)
    print(f"{args.blocks} blocks, hidden {args.hidden}, input ({args.batch}, 4, {args.size}, {args.size}), "
          f"{args.n_terms} series terms, {rows[0]['parameters']} parameters")
    print(f"{'logdet_grad':<26} {'peak MiB':>9} {'ratio':>6} {'maxRSS MiB':>11} {'step s':>7} {'loss':>10}")
    for r in rows:
        r["ratio"] = r["peak_mib"] / ref if ref else None
        ratio = f"{r['ratio']:.3f}" if ref else "-"
        print(f"{r['arm']:<26} {r['peak_mib']:9.1f} {ratio:>6} {r['maxrss_mib']:11.1f} {r['seconds']:7.2f} "
              f"{r['loss']:10.5f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"settings": vars(args), "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
