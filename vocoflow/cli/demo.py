"""``vocoflow demo``: fit a small flow on toy data and write samples and plots."""

from __future__ import annotations

import json


def register(sub):
    p = sub.add_parser("demo", help="fit a small flow to 2-D toy data; write samples and plots")
    p.add_argument("--out", default="demo_out", help="output directory (default: demo_out)")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args) -> int:
    from vocoflow.train.demo import run_demo

    summary = run_demo(args.out, steps=args.steps, seed=args.seed)
    print(json.dumps(summary, indent=2))
    print(f"wrote {args.out}/samples.png, {args.out}/loss.png, {args.out}/summary.json")
    return 0
