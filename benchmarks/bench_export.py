"""Export time and synthesis speed of the exported graphs (TorchScript, ONNX Runtime) against
PyTorch synthesis (``Vocoder.synthesize``), same model, input, noise and threads, on the CPU.

    python benchmarks/bench_export.py [--config configs/waveglow_small.yaml] [--seconds 2]
                                      [--threads 2] [--repeats 3] [--json out.json]

The model is freshly initialised (speed does not depend on the weights; its zero-initialised
output layers get small random weights so every coupling does something) and saved to a
temporary vocoder directory, which is exported with ``vocoflow.vocoders.export.export_vocoder``
(timed without and with its own check against PyTorch). Each runner then synthesises
``--seconds`` of audio after one warm-up; the fastest of ``--repeats`` runs counts. PyTorch runs
``WN``'s GEMM inference path, the graphs the traced convolution path. TorchScript runs without
the profiling executor's per-shape optimisation (``torch.jit.optimized_execution(False)``, as
``load_exported`` does). The SNR of each graph's audio against PyTorch's is printed too.

RTF = wall time / audio duration (below 1: faster than real time).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="configs/waveglow_small.yaml")
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from vocoflow.vocoders import build_model, load, load_config, save_vocoder, snr_db
    from vocoflow.vocoders.export import export_vocoder, load_exported
    from vocoflow.vocoders.synthesis import activate

    cfg = load_config(args.config)
    torch.manual_seed(0)
    model = build_model(cfg)
    activate(model)
    result = {"config": args.config, "threads": args.threads, "seconds": args.seconds,
              "load_1min_before": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as tmp:
        d = save_vocoder(model, cfg, os.path.join(tmp, "voc"))
        voc = load(d)
        frames = int(round(args.seconds * voc.sample_rate / voc.hop_length))
        g = torch.Generator().manual_seed(1)
        mel = (torch.randn(1, voc.n_mels, frames, generator=g) - 5.0).clamp_min(voc.features.log_floor)
        noise = torch.randn(1, frames * voc.hop_length, generator=g)
        audio_s = frames * voc.hop_length / voc.sample_rate

        def best(fn):
            fn()
            times = []
            for _ in range(args.repeats):
                t = time.perf_counter()
                out = fn()
                times.append(time.perf_counter() - t)
            return min(times), out

        t_ref, ref = best(lambda: voc.synthesize(mel, noise=noise, denoise=0.0, check=False))
        result["pytorch_s"], result["pytorch_rtf"] = t_ref, t_ref / audio_s
        for fmt in ("torchscript", "onnx"):
            out = os.path.join(tmp, f"g{fmt}")
            t = time.perf_counter()
            export_vocoder(voc, out, fmt, verify=False)
            result[f"{fmt}_export_s"] = time.perf_counter() - t
            t = time.perf_counter()
            export_vocoder(voc, out, fmt, overwrite=True)
            result[f"{fmt}_export_verified_s"] = time.perf_counter() - t
            result[f"{fmt}_file_mb"] = os.path.getsize(out) / 2**20
            runner = load_exported(out)
            t_g, got = best(lambda: runner(mel, noise))
            result[f"{fmt}_s"], result[f"{fmt}_rtf"] = t_g, t_g / audio_s
            result[f"{fmt}_speedup_vs_pytorch"] = t_ref / t_g
            result[f"{fmt}_snr_db"] = snr_db(ref, torch.from_numpy(got))
    result["load_1min_after"] = os.getloadavg()[0]
    width = max(map(len, result))
    for k, v in result.items():
        print(f"{k:<{width}}  {v:.4g}" if isinstance(v, float) else f"{k:<{width}}  {v}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
