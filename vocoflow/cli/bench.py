"""``vocoflow benchmark``: synthesis speed and memory of a vocoder, next to the machine's GEMM rate.

``SOURCE`` is a model config YAML (a randomly initialised model of that shape, its
zero-initialised output layers given small random weights; speed does not depend on the
weights) or a saved vocoder directory. The measurement runs in a fresh child
process (so thread settings and memory counters start clean):

1. a plain float32 matrix multiply (n x n x n, ``--matmul-size``, default 2048; bfloat16 too
   with ``--bf16``) gives the machine's GEMM rate in this run (best of several, measured
   before and after synthesis; the higher is used);
2. synthesis of ``--seconds`` of audio from a mel (after a short warm-up) gives the wall time,
   the real-time factor (wall time / audio duration; below 1 is faster than real time), samples
   per second and the achieved multiply-accumulate rate, ``macs_per_sample * samples / time``
   (the model's analytic count, see ``WaveGlow.macs_per_sample``), also as a fraction of the
   GEMM rate;
3. memory: on the CPU, ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` of the child, read before
   the timed synthesis (after loading and warm-up) and after it: ``peak_rss_mb`` is the process
   peak (model, torch runtime and synthesis), ``synth_rss_delta_mb`` what synthesis added on top
   of what was already resident. On CUDA, ``torch.cuda.max_memory_allocated``.

Other processes on the machine slow both measurements down, not always equally; the
``same, by CPU time`` line repeats the comparison with CPU time (``time.process_time``) instead
of wall time, which is less sensitive to them, and the 1-minute load average before and after
is reported.

With ``--bf16`` the float32 path is timed on the same input and noise as well, and the
speed-up and the SNR of the bf16 audio against the float32 audio are reported.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time

from vocoflow.cli.main import CLIError

KEYS = ("source", "model", "device", "threads", "dtype", "bf16", "chunk_frames", "audio_seconds",
        "sample_rate", "samples", "n_params", "macs_per_sample", "wall_s", "rtf",
        "samples_per_s", "achieved_gmacs", "matmul_fp32_gmacs", "matmul_bf16_gmacs",
        "fraction_of_matmul", "peak_rss_mb", "synth_rss_delta_mb", "memory_method")


def register(subparsers) -> None:
    import argparse

    p = subparsers.add_parser(
        "benchmark",
        help="vocoder synthesis speed, memory and MAC rate vs. the machine's matmul rate",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(p)
    p.set_defaults(func=cmd_benchmark)


def add_arguments(p) -> None:
    p.add_argument("source", help="model config YAML (configs/waveglow_*.yaml) or a saved vocoder directory")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--seconds", type=float, default=4.0, help="seconds of audio to synthesise (default 4)")
    p.add_argument("--bf16", action="store_true", help="conditioners in bfloat16 (also times float32 for comparison)")
    p.add_argument("--chunk-frames", type=int, default=None, help="chunked synthesis with this many frames per chunk")
    p.add_argument("--repeats", type=int, default=1, help="timed syntheses; the fastest counts (default 1)")
    p.add_argument("--seed", type=int, default=0, help="noise and mel seed")
    p.add_argument("--matmul-size", type=int, default=2048,
                   help="size n of the n x n x n reference matmul (default 2048)")
    p.add_argument("--save-wav", default=None, help="write the synthesised audio here (to compare runs)")
    p.add_argument("--json", default=None, metavar="OUT", help="write the results as JSON")
    p.add_argument("--child", default=None, help=argparse_suppress())


def argparse_suppress():
    import argparse

    return argparse.SUPPRESS


# ----------------------------------------------------------------------------------- child side
def _matmul_rate(dtype, device, n: int = 2048, repeats: int = 5) -> tuple[float, float]:
    """(wall-clock, CPU-time) GMAC/s of an n x n x n matmul, best of ``repeats``."""
    import torch

    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    best, best_cpu = math.inf, math.inf
    for i in range(repeats + 1):
        _sync(device)
        t0, c0 = time.perf_counter(), time.process_time()
        a @ b
        _sync(device)
        if i:
            best = min(best, time.perf_counter() - t0)
            best_cpu = min(best_cpu, time.process_time() - c0)
    return n**3 / best / 1e9, n**3 / max(best_cpu, 1e-9) / 1e9


def _sync(device):
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def _maxrss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _load(source: str, device: str):
    import torch

    from vocoflow.vocoders import Vocoder, build_model, features_from_config, load_model_config
    from vocoflow.vocoders.synthesis import activate

    if os.path.isdir(source):
        return Vocoder.from_pretrained(source, device=device), os.path.basename(source.rstrip("/"))
    cfg = load_model_config(source)
    torch.manual_seed(0)
    model = build_model(cfg)
    activate(model)
    voc = Vocoder(model, features_from_config(cfg), cfg["synthesis"], device=device, config=cfg)
    return voc, os.path.splitext(os.path.basename(source))[0]


def run_child(args) -> dict:
    import numpy as np
    import torch

    from vocoflow.vocoders.synthesis import snr_db

    torch.set_num_threads(args.threads)
    device = args.device
    voc, name = _load(args.source, device)
    frames = max(1, int(math.ceil(args.seconds * voc.sample_rate / voc.hop_length)))
    g = torch.Generator().manual_seed(args.seed)
    mel = voc.silence(frames) + 0.5 * torch.randn(voc.n_mels, frames, generator=g)
    mel = voc.prepare(mel, normalized=voc.normalize, check=False)[0]
    noise = torch.randn(1, frames * voc.hop_length, generator=g)
    samples = frames * voc.hop_length

    n_mm = args.matmul_size
    load0 = os.getloadavg()[0]
    mm32 = [_matmul_rate(torch.float32, device, n_mm)]
    mm16 = [_matmul_rate(torch.bfloat16, device, n_mm)] if args.bf16 else []

    def synth(bf16):
        return voc.synthesize_batch([mel], noises=[noise[0]], chunk_frames=args.chunk_frames,
                                    bf16=bf16, prepared=True, denoise=0.0)[0]

    # warm-up on a short input (allocator, oneDNN primitives, bf16 weight copy)
    short = mel[:, : min(frames, 16)]
    for bf16 in ([False, True] if args.bf16 else [False]):
        voc.synthesize_batch([short], bf16=bf16, prepared=True, denoise=0.0)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    rss0 = _maxrss_mb()

    def timed(bf16):
        best, best_cpu, out = math.inf, math.inf, None
        for _ in range(max(1, args.repeats)):
            _sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            out = synth(bf16)
            _sync(device)
            best = min(best, time.perf_counter() - t0)
            best_cpu = min(best_cpu, time.process_time() - c0)
        return best, best_cpu, out

    wall, cpu, wav = timed(args.bf16)
    rss1 = _maxrss_mb()
    result_extra = {}
    if args.bf16:
        wall32, _, wav32 = timed(False)
        result_extra = {"fp32_wall_s": wall32, "bf16_speedup": wall32 / wall,
                        "snr_bf16_vs_fp32_db": snr_db(wav32, wav)}
    mm32.append(_matmul_rate(torch.float32, device, n_mm))
    if args.bf16:
        mm16.append(_matmul_rate(torch.bfloat16, device, n_mm))
    if args.save_wav:
        from vocoflow.audio.io import save_wav

        save_wav(args.save_wav, wav.numpy(), voc.sample_rate)
        np.save(os.path.splitext(args.save_wav)[0] + ".npy", wav.numpy())

    load1 = os.getloadavg()[0]
    macs = float(voc.model.macs_per_sample())
    achieved = macs * samples / wall / 1e9
    ref_runs = mm16 if args.bf16 else mm32
    ref = max(r[0] for r in ref_runs)
    # CPU-time view (less sensitive to other processes taking the cores): work per CPU-second
    achieved_cpu = macs * samples / cpu / 1e9
    ref_cpu = max(r[1] for r in ref_runs)
    if device.startswith("cuda"):
        peak, delta, method = (torch.cuda.max_memory_allocated() / 2**20, None,
                               "torch.cuda.max_memory_allocated")
    else:
        peak, delta, method = rss1, rss1 - rss0, "getrusage ru_maxrss (child process)"
    return {
        "source": args.source,
        "model": name,
        "device": device,
        "threads": args.threads,
        "dtype": "bfloat16 conditioners" if args.bf16 else "float32",
        "bf16": bool(args.bf16),
        "chunk_frames": args.chunk_frames,
        "audio_seconds": samples / voc.sample_rate,
        "sample_rate": voc.sample_rate,
        "samples": samples,
        "n_params": voc.model.n_params(trainable_only=False),
        "macs_per_sample": macs,
        "wall_s": wall,
        "rtf": wall / (samples / voc.sample_rate),
        "samples_per_s": samples / wall,
        "achieved_gmacs": achieved,
        "matmul_fp32_gmacs": max(r[0] for r in mm32),
        "matmul_fp32_runs": [r[0] for r in mm32],
        "matmul_bf16_gmacs": max(r[0] for r in mm16) if mm16 else None,
        "fraction_of_matmul": achieved / ref,
        "fraction_reference": "bf16 matmul" if args.bf16 else "fp32 matmul",
        "fraction_of_fp32_matmul": achieved / max(r[0] for r in mm32),
        "cpu_s": cpu,
        "cpu_utilization": cpu / (wall * args.threads),
        "fraction_of_matmul_cpu_time": achieved_cpu / ref_cpu,
        "loadavg_1min": [load0, load1],
        "peak_rss_mb": peak,
        "synth_rss_delta_mb": delta,
        "memory_method": method,
        **result_extra,
    }


# ----------------------------------------------------------------------------------- parent side
def format_table(r: dict) -> str:
    def fmt(v):
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    rows = [
        ("model", r["model"]), ("device / threads", f"{r['device']} / {r['threads']}"),
        ("precision", r["dtype"]), ("chunk frames", r["chunk_frames"]),
        ("parameters", f"{r['n_params'] / 1e6:.2f} M (weight norm folded)"),
        ("audio", f"{r['audio_seconds']:.2f} s at {r['sample_rate']} Hz"),
        ("wall time", f"{r['wall_s']:.3f} s"),
        ("real-time factor", f"{r['rtf']:.3f} ({'faster' if r['rtf'] < 1 else 'slower'} than real time)"),
        ("samples / s", f"{r['samples_per_s']:.0f}"),
        ("MACs / sample", f"{r['macs_per_sample'] / 1e6:.3f} M"),
        ("achieved GMAC/s", fmt(r["achieved_gmacs"])),
        ("fp32 matmul GMAC/s", fmt(r["matmul_fp32_gmacs"])),
        ("bf16 matmul GMAC/s", fmt(r["matmul_bf16_gmacs"])),
        (f"fraction of {r['fraction_reference']}", f"{100 * r['fraction_of_matmul']:.1f} %"),
        ("same, by CPU time", f"{100 * r['fraction_of_matmul_cpu_time']:.1f} % "
         f"(CPU use {100 * r['cpu_utilization']:.0f} % of {r['threads']} threads; load "
         f"{r['loadavg_1min'][0]:.1f} -> {r['loadavg_1min'][1]:.1f})"),
        ("peak memory", f"{r['peak_rss_mb']:.0f} MB"),
        ("synthesis added", "-" if r["synth_rss_delta_mb"] is None else f"{r['synth_rss_delta_mb']:.0f} MB"),
    ]
    if "bf16_speedup" in r:
        rows += [("fraction of fp32 matmul", f"{100 * r['fraction_of_fp32_matmul']:.1f} %"),
                 ("fp32 wall time", f"{r['fp32_wall_s']:.3f} s"),
                 ("bf16 speed-up", f"{r['bf16_speedup']:.2f} x"),
                 ("bf16 vs fp32 SNR", f"{r['snr_bf16_vs_fp32_db']:.1f} dB")]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {fmt(v) if not isinstance(v, str) else v}" for k, v in rows)


def cmd_benchmark(args) -> int:
    if args.child:
        result = run_child(args)
        with open(args.child, "w", encoding="utf-8") as f:
            json.dump(result, f)
        return 0
    if not (os.path.isdir(args.source) or os.path.isfile(args.source)):
        raise CLIError(f"{args.source}: no such config file or vocoder directory")
    if args.seconds <= 0 or args.threads < 1:
        raise CLIError("--seconds must be > 0 and --threads >= 1")
    from .device import check_device

    check_device(args.device)
    fd, out = tempfile.mkstemp(suffix=".json", prefix="vocoflow-bench-")
    os.close(fd)
    try:
        cmd = [sys.executable, "-m", "vocoflow.cli.bench", args.source, "--threads", str(args.threads),
               "--device", args.device, "--seconds", str(args.seconds), "--repeats", str(args.repeats),
               "--seed", str(args.seed), "--matmul-size", str(args.matmul_size), "--child", out]
        if args.bf16:
            cmd.append("--bf16")
        if args.chunk_frames:
            cmd += ["--chunk-frames", str(args.chunk_frames)]
        if args.save_wav:
            cmd += ["--save-wav", args.save_wav]
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
        proc = subprocess.run(cmd, env=env)
        if proc.returncode != 0:
            raise CLIError(f"benchmark child process failed with status {proc.returncode}")
        with open(out, encoding="utf-8") as f:
            result = json.load(f)
    finally:
        os.unlink(out)
    print(format_table(result))
    if args.json:
        from vocoflow.atomic import atomic_write_text

        atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
    return 0


def main(argv=None) -> int:
    """Entry point of ``python -m vocoflow.cli.bench`` and ``benchmarks/bench_vocoder.py``."""
    import argparse

    from vocoflow.cli.main import CLIError as _E

    p = argparse.ArgumentParser(prog="vocoflow benchmark", description=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    args = p.parse_args(argv)
    try:
        return cmd_benchmark(args)
    except _E as e:
        print(f"vocoflow benchmark: error: {e}", file=sys.stderr)
        return e.code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
