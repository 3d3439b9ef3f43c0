"""Synthesis speed of the default IAF student (Parallel WaveNet layout: 4 flows of 10/10/10/30
WN layers, 64 channels) against the default WaveGlow (NVIDIA's 12 flows, WN 8 x 256), same run,
same threads, same audio length, float32 on the CPU.

Both models are freshly initialised (speed does not depend on the weights; the students' and
WaveGlow's couplings are moved off the identity so that no shortcut applies), weight norm is
folded and synthesis runs under ``torch.inference_mode``, i.e. through ``WN``'s GEMM inference
path. The two models are timed alternately, ``--repeats`` times each; the fastest run of each
counts (the least disturbed by other load on the machine) and the median ratio is printed too.

    python benchmarks/bench_student.py --threads 2 --seconds 2 --repeats 3 [--json out.json]

RTF = wall time / audio duration (below 1: faster than real time).

OpenMP wait policy: ``--wait-policy default`` (the default) leaves the environment as it is;
``passive``/``active`` set ``OMP_WAIT_POLICY`` before torch starts, for both models alike. On a
quiet machine the default (spinning) policy is fastest. On a shared machine whose cores are busy
with other work, spinning between parallel regions wastes the very cores the team waits for and
every time becomes erratic (several-fold swings between runs, worst for the model with more,
smaller operations: the student); ``passive`` then gives steadier (not faster) numbers. The
script prints the 1-minute load average next to the result.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time


def _wait_policy(argv) -> str:
    """Read --wait-policy before torch (and OpenMP) start."""
    policy = "default"
    for i, a in enumerate(argv):
        if a == "--wait-policy" and i + 1 < len(argv):
            policy = argv[i + 1]
        elif a.startswith("--wait-policy="):
            policy = a.split("=", 1)[1]
    if policy != "default":
        os.environ["OMP_WAIT_POLICY"] = policy.upper()
    return policy


if __name__ == "__main__":
    _wait_policy(sys.argv[1:])

import torch  # noqa: E402


def build(features: str):
    from vocoflow.audio import get_preset
    from vocoflow.vocoders import IAFStudent, StudentConfig, WaveGlow, WaveGlowConfig

    f = get_preset(features)
    models = {
        "student": IAFStudent(StudentConfig(n_mels=f.n_mels, hop_length=f.hop_length)),
        "waveglow": WaveGlow(WaveGlowConfig(n_mels=f.n_mels, hop_length=f.hop_length)),
    }
    g = torch.Generator().manual_seed(0)
    for m in models.values():
        with torch.no_grad():
            for net in m.conditioners():
                net.end.weight.normal_(0, 0.01, generator=g)
        m.remove_weight_norm().eval()
    return f, models


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seconds", type=float, default=2.0, help="audio synthesised per run")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--features", default="asterisk16k", help="feature preset (rate, hop, mels)")
    p.add_argument("--block", type=int, default=None,
                   help="time block of the students' causal WN inference (default: BlockedWN.block)")
    p.add_argument("--wait-policy", choices=["passive", "active", "default"], default="default",
                   help="OMP_WAIT_POLICY for this run (default: the environment's; see the "
                        "module docstring)")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.block:
        from vocoflow.nets import BlockedWN

        BlockedWN.block = args.block
    f, models = build(args.features)
    frames = int(round(args.seconds * f.sample_rate / f.hop_length))
    seconds = frames * f.hop_length / f.sample_rate
    g = torch.Generator().manual_seed(1)
    mel = torch.randn(1, f.n_mels, frames, generator=g)
    noise = torch.randn(1, frames * f.hop_length, generator=g)
    sigma = {"student": 1.0, "waveglow": 0.6}
    times = {k: [] for k in models}
    with torch.inference_mode():
        for name, m in models.items():  # warm-up
            m.infer(mel[..., :8], sigma=sigma[name], noise=noise[:, :8 * f.hop_length])
        for _ in range(args.repeats):
            for name, m in models.items():
                t0 = time.perf_counter()
                wav = m.infer(mel, sigma=sigma[name], noise=noise)
                times[name].append(time.perf_counter() - t0)
                assert wav.shape == (1, frames * f.hop_length) and torch.isfinite(wav).all()
    res = {"threads": args.threads, "audio_seconds": seconds, "sample_rate": f.sample_rate,
           "repeats": args.repeats, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
           "loadavg_1min": os.getloadavg()[0], "torch": torch.__version__}
    for name, m in models.items():
        best = min(times[name])
        res[name] = {"params": m.n_params(trainable_only=False), "macs_per_sample": m.macs_per_sample(),
                     "wall_s": times[name], "best_s": best, "rtf": best / seconds,
                     "achieved_gmacs": m.macs_per_sample() * frames * f.hop_length / best / 1e9}
    res["speedup"] = res["waveglow"]["best_s"] / res["student"]["best_s"]
    res["speedup_median_pair"] = statistics.median(
        w / s for w, s in zip(times["waveglow"], times["student"]))
    for name in models:
        r = res[name]
        print(f"{name:9s} params {r['params'] / 1e6:6.2f} M  MACs/sample {r['macs_per_sample'] / 1e6:6.2f} M  "
              f"best {r['best_s']:7.3f} s  RTF {r['rtf']:6.3f}  {r['achieved_gmacs']:6.2f} GMAC/s")
    print(f"student speed-up over WaveGlow: {res['speedup']:.2f}x (best runs), "
          f"{res['speedup_median_pair']:.2f}x (median of paired runs); "
          f"{args.threads} threads, {seconds:.2f} s of {f.sample_rate} Hz audio, "
          f"OMP_WAIT_POLICY={res['omp_wait_policy']}, load average {res['loadavg_1min']:.1f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
