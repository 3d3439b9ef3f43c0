"""Vocoder synthesis benchmark (a thin wrapper of ``vocoflow benchmark``).

    python benchmarks/bench_vocoder.py configs/waveglow_nvidia.yaml --threads 2 --seconds 4 [--bf16]
        [--chunk-frames N] [--json out.json]

See ``vocoflow benchmark --help`` for what is measured and how.
"""

import sys

from vocoflow.cli.bench import main

if __name__ == "__main__":
    sys.exit(main())
