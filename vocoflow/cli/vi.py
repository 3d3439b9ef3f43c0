"""``vocoflow fit-vi``: fit planar / radial / IAF posteriors to the 2-D energy targets of
Rezende & Mohamed (2015) by reverse KL; write ``results.json`` (KL, ELBO, log Z per model) and
``densities.png`` (true density vs each fitted one)."""

from __future__ import annotations

import json

from vocoflow.cli.main import CLIError


def register(sub):
    p = sub.add_parser(
        "fit-vi", help="fit planar/radial/IAF flows to the 2-D VI energy targets (reverse KL)",
        description="Fit variational posteriors (planar, radial, IAF flows) to the 2-D energy "
                    "targets U1-U4 of Rezende & Mohamed (2015) by reverse KL; report KL and ELBO "
                    "(log Z by grid integration) and plot the densities.")
    p.add_argument("--target", default="u1",
                   help="comma-separated targets: u1, u2, u3, u4, gauss (default: u1)")
    p.add_argument("--flow", default="planar", help="comma-separated flows: planar, radial, iaf")
    p.add_argument("--length", default="8", help="comma-separated numbers of flow steps K (default: 8)")
    p.add_argument("--models", default=None,
                   help="FLOW:K list (e.g. planar:2,radial:8,iaf:4); replaces --flow/--length")
    p.add_argument("--steps", type=int, default=5000, help="optimisation steps per fit")
    p.add_argument("--batch", type=int, default=256, help="samples per step")
    p.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate (cosine decay)")
    p.add_argument("--anneal-steps", type=int, default=None,
                   help="steps over which beta on U rises from 0.01 to 1 (default: steps/5; 0: none)")
    p.add_argument("--base", default="diagonal", choices=["diagonal", "standard"],
                   help="base: learned diagonal Gaussian (default) or fixed N(0, I)")
    p.add_argument("--eval-samples", type=int, default=65536, help="samples for the KL/ELBO estimate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output directory (results.json, densities.png)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def _models(args):
    from vocoflow.train.vi import parse_models

    if args.models:
        return parse_models(args.models)
    flows = [f.strip() for f in args.flow.split(",") if f.strip()]
    lengths = []
    for k in args.length.split(","):
        if not k.strip().isdigit():
            raise ValueError(f"--length: {k.strip()!r} is not a non-negative integer")
        lengths.append(int(k))
    return parse_models(",".join(f"{f}:{k}" for f in flows for k in lengths))


def run(args) -> int:
    from vocoflow.train.vi import run_vi

    targets = [t.strip() for t in args.target.split(",") if t.strip()]
    try:
        models = _models(args)
        results = run_vi(args.out, targets, models, steps=args.steps, batch=args.batch, lr=args.lr,
                         anneal_steps=args.anneal_steps, base=args.base, seed=args.seed,
                         eval_samples=args.eval_samples, progress=not args.no_progress)
    except ValueError as e:
        raise CLIError(str(e)) from None
    table = {t: {m: {"kl": round(r["kl"], 4), "elbo": round(r["elbo"], 4)}
                 for m, r in entry["models"].items()} for t, entry in results["targets"].items()}
    print(json.dumps(table, indent=2))
    print(f"wrote {args.out}/results.json, {args.out}/densities.png")
    return 0
