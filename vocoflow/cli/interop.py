"""``vocoflow import-waveglow``: NVIDIA WaveGlow checkpoints to vocoflow vocoder directories."""

from __future__ import annotations

from vocoflow.cli.main import CLIError


def register(sub):
    p = sub.add_parser(
        "import-waveglow",
        help="turn an NVIDIA WaveGlow checkpoint (train.py's .pt or a state dict) into a vocoder directory",
        description="Read an NVIDIA WaveGlow checkpoint (e.g. waveglow_256channels_universal_v5.pt) without "
                    "NVIDIA's code and without running code from the file, and write a vocoflow vocoder "
                    "directory that synthesises exactly what NVIDIA's infer() does, with Tacotron 2's mel "
                    "front end and no feature normalisation.")
    p.add_argument("checkpoint", help="NVIDIA checkpoint (.pt; torch zip or legacy format)")
    p.add_argument("out_dir", help="vocoder directory to write (an existing vocoder directory is replaced)")
    p.add_argument("--config", default=None,
                   help="model config YAML to check the checkpoint against (its train/synthesis sections are kept)")
    p.add_argument("--fold-weight-norm", action="store_true",
                   help="save plain folded weights instead of weight norm's g/v")
    p.add_argument("--sigma", type=float, default=None, help="default synthesis sigma saved (default 0.6)")
    p.add_argument("--denoise", type=float, default=None, help="default denoiser strength saved (default 0)")
    p.set_defaults(func=run)


def run(args) -> int:
    from vocoflow.vocoders import VocoderError, read_vocoder_dir
    from vocoflow.vocoders.nvidia import import_waveglow

    try:
        out = import_waveglow(args.checkpoint, args.out_dir, config=args.config,
                              fold_weight_norm=args.fold_weight_norm, sigma=args.sigma, denoise=args.denoise)
        saved = read_vocoder_dir(out)
    except VocoderError as e:
        raise CLIError(str(e)) from None
    m = saved.model.config
    print(f"wrote {out}: WaveGlow {m.n_flows} flows x {m.wn_layers} layers x {m.wn_channels} channels, "
          f"{saved.model.n_params():,} parameters, weight norm {saved.config['training']['weight_norm']}, "
          f"features {saved.features.sample_rate} Hz / {saved.features.n_mels} mels (Tacotron 2)")
    return 0
