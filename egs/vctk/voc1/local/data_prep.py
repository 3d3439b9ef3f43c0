#!/usr/bin/env python
"""Write Kaldi data directories train/dev/eval for VCTK-Corpus-0.92.

Each ``wav48_silence_trimmed/<spk>/<spk>_<nnn>_mic1.flac`` (48 kHz) with a transcript
``txt/<spk>/<spk>_<nnn>.txt`` is one utterance: id ``<spk>_<nnn>``, speaker ``<spk>``. mic2
files are ignored; utterances without a transcript (all of p315, a few others) are skipped.
Per speaker, over its ids sorted in C locale: the last ``--n-eval`` (2) are eval, the
``--n-dev`` (2) before them dev, the rest train (a speaker with too few utterances goes
entirely to train).
"""

import argparse
import os
import sys

from vocoflow.audio import write_data_dir

SUFFIX = "_mic1.flac"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", help="the VCTK-Corpus-0.92 directory")
    parser.add_argument("data_dir", help="output: DATA/{train,dev,eval}")
    parser.add_argument("--n-dev", type=int, default=2)
    parser.add_argument("--n-eval", type=int, default=2)
    args = parser.parse_args(argv)

    corpus = os.path.abspath(args.corpus)
    wav_root = os.path.join(corpus, "wav48_silence_trimmed")
    splits = {"train": {}, "dev": {}, "eval": {}}
    no_text = 0
    for spk in sorted(os.listdir(wav_root), key=str.encode):
        spk_dir = os.path.join(wav_root, spk)
        if not os.path.isdir(spk_dir):
            continue
        utts = {}
        for name in os.listdir(spk_dir):
            if not name.endswith(SUFFIX):
                continue
            utt = name[: -len(SUFFIX)]
            txt = os.path.join(corpus, "txt", spk, f"{utt}.txt")
            text = None
            if os.path.isfile(txt):
                with open(txt, encoding="utf-8", errors="replace") as f:
                    text = " ".join(f.read().split())
            if not text:
                no_text += 1
                continue
            utts[utt] = (os.path.join(spk_dir, name), spk, text)
        ids = sorted(utts, key=str.encode)
        n_held = args.n_dev + args.n_eval
        if len(ids) > n_held:
            n_train = len(ids) - n_held
            parts = {"train": ids[:n_train], "dev": ids[n_train:n_train + args.n_dev],
                     "eval": ids[n_train + args.n_dev:]}
        else:
            parts = {"train": ids, "dev": [], "eval": []}
        for name, chosen in parts.items():
            for u in chosen:
                splits[name][u] = utts[u]
    for name, utts in splits.items():
        if not utts:
            sys.exit(f"{sys.argv[0]}: no utterances for {name} under {wav_root}")
        write_data_dir(
            os.path.join(args.data_dir, name),
            {u: v[0] for u, v in utts.items()},
            {u: v[1] for u, v in utts.items()},
            {u: v[2] for u, v in utts.items()},
        )
    print(f"{sys.argv[0]}: " + ", ".join(f"{k} {len(v)}" for k, v in splits.items())
          + f"; {no_text} mic1 files without a transcript skipped")


if __name__ == "__main__":
    main()
