#!/usr/bin/env python
"""Decode every ``*.g722`` under SRC to 16 kHz 16-bit WAV under DST, keeping subdirectories.

Uses the ``G722`` package (libg722, ITU-T G.722 at 64 kbit/s). Existing WAV files are skipped:
they are written atomically, so an existing one is complete.
"""

import argparse
import os
import sys

import numpy as np

from vocoflow.audio import save_wav


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("src")
    parser.add_argument("dst")
    parser.add_argument("--bit-rate", type=int, default=64000)
    args = parser.parse_args()
    import G722

    n_new = n_old = 0
    for root, dirs, files in os.walk(args.src):
        dirs.sort()
        for name in sorted(files):
            if not name.endswith(".g722"):
                continue
            rel = os.path.relpath(os.path.join(root, name), args.src)
            out = os.path.join(args.dst, rel[: -len(".g722")] + ".wav")
            if os.path.exists(out):
                n_old += 1
                continue
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with open(os.path.join(root, name), "rb") as f:
                data = f.read()
            codec = G722.G722(16000, args.bit_rate)  # a fresh decoder state per file
            pcm = np.asarray(codec.decode(data), dtype=np.int16)
            save_wav(out, pcm, 16000)
            n_new += 1
    print(f"decoded {n_new} file(s), {n_old} already there", file=sys.stderr)
    return 0 if n_new + n_old else 1


if __name__ == "__main__":
    sys.exit(main())
