"""``vocoflow export DIR --format torchscript|onnx``: a vocoder's synthesis as one graph.

The graph takes the raw log-mel ``mel (batch, n_mels, frames)`` (as ``Vocoder.synthesize``
does: the feature normalisation is inside) and unit normal ``noise (batch, frames * hop)``
(one value per output sample; the graph multiplies it by sigma), and returns ``audio (batch,
frames * hop)``; batch and frames are dynamic. Vocoders with an excitation predict F0 from the
mel inside the graph, or with ``--f0-input`` take ``f0 (batch, frames)`` in Hz as a third
input. The bias denoiser is not in the graph.

The graph is written to ``--output`` (default ``DIR/synthesis.onnx`` or
``DIR/synthesis.torchscript.pt``) with ``OUTPUT.json`` next to it (input/output names and
shapes, sample rate, hop, sigma, the check below). Before anything is written the graph is run
at two input lengths other than the traced one and compared with PyTorch synthesis (SNR at
least ``--min-snr-db``, default 60 dB; ``--no-verify`` skips it).
"""

from __future__ import annotations

from vocoflow.cli.main import CLIError


def register(subparsers) -> None:
    import argparse

    p = subparsers.add_parser(
        "export", help="export a vocoder's synthesis to TorchScript or ONNX (mel + noise -> audio)",
        description=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("directory", metavar="DIR", help="vocoder directory (config.yaml, model.pt[, stats.npz])")
    p.add_argument("--format", dest="fmt", required=True, metavar="{torchscript,onnx}",
                   help="torchscript (torch.jit) or onnx (run by onnxruntime and others)")
    p.add_argument("-o", "--output", default=None,
                   help="exported file (default DIR/synthesis.onnx or DIR/synthesis.torchscript.pt)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--sigma", type=float, default=None,
                   help="latent temperature fixed in the graph (default: the vocoder's saved sigma)")
    p.add_argument("--f0-input", action="store_true",
                   help="vocoders with an excitation: take F0 (batch, frames) in Hz as an input "
                        "instead of predicting it from the mel")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--min-snr-db", type=float, default=60.0,
                   help="the export fails if the graph matches PyTorch worse than this (default 60)")
    p.add_argument("--no-verify", action="store_true", help="do not compare the graph with PyTorch")
    p.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    from vocoflow.vocoders import VocoderError
    from vocoflow.vocoders.export import FORMATS, export_vocoder, spec_path

    if args.fmt not in FORMATS:
        raise CLIError(f"--format {args.fmt}: unknown export format (choose from {', '.join(FORMATS)})")
    try:
        spec = export_vocoder(args.directory, args.output, args.fmt, sigma=args.sigma,
                              f0_input=args.f0_input, overwrite=args.overwrite, opset=args.opset,
                              verify=not args.no_verify, min_snr_db=args.min_snr_db)
    except VocoderError as e:
        raise CLIError(str(e)) from None
    out = spec["output"]
    checks = ", ".join(f"{c['snr_db']} dB at {c['frames']} frames" for c in spec.get("verified", []))
    print(f"wrote {out} ({args.fmt}) and {spec_path(out)}; inputs "
          + ", ".join(f"{i['name']} {tuple(i['shape'])}" for i in spec["inputs"])
          + (f"; matches PyTorch: {checks}" if checks else ""))
    return 0
