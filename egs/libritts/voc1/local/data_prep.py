#!/usr/bin/env python
"""Write one Kaldi data directory from one LibriTTS subset.

Each ``<subset>/<spk>/<chapter>/<stem>.wav`` (24 kHz; ``stem`` is ``<spk>_<chapter>_...``)
with its ``<stem>.normalized.txt`` is one utterance: id ``<stem>``, speaker ``<spk>``.
Utterances without a (non-empty) normalized transcript are skipped.
"""

import argparse
import os
import sys

from vocoflow.audio import write_data_dir


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("subset_dir", help="LibriTTS/<subset>")
    parser.add_argument("out_dir", help="output data directory")
    args = parser.parse_args(argv)

    root = os.path.abspath(args.subset_dir)
    wav_scp, utt2spk, text = {}, {}, {}
    skipped = 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            if not name.endswith(".wav"):
                continue
            stem = name[:-4]
            spk = os.path.relpath(dirpath, root).split(os.sep)[0]
            txt = os.path.join(dirpath, f"{stem}.normalized.txt")
            content = None
            if os.path.isfile(txt):
                with open(txt, encoding="utf-8", errors="replace") as f:
                    content = " ".join(f.read().split())
            if not content or not stem.startswith(f"{spk}_"):
                skipped += 1
                continue
            wav_scp[stem] = os.path.join(dirpath, name)
            utt2spk[stem] = spk
            text[stem] = content
    if not wav_scp:
        sys.exit(f"{sys.argv[0]}: no utterances under {root}")
    write_data_dir(args.out_dir, wav_scp, utt2spk, text)
    print(f"{sys.argv[0]}: {args.out_dir}: {len(wav_scp)} utterances, {len(set(utt2spk.values()))} speakers"
          + (f"; {skipped} skipped (no transcript)" if skipped else ""))


if __name__ == "__main__":
    main()
