#!/usr/bin/env python
"""Write Kaldi data directories train/dev/eval for LJSpeech-1.1.

``metadata.csv`` lines are ``id|text|normalized text``; each ``wavs/<id>.wav`` is one utterance
of speaker ``LJ`` (ids already start with ``LJ``). The text is the normalized transcript (the
raw one when the normalized field is empty). Ids sorted in C locale: the last ``--n-eval``
(100) are eval, the ``--n-dev`` (100) before them dev, the rest train.
"""

import argparse
import os
import sys

from vocoflow.audio import write_data_dir

SPEAKER = "LJ"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", help="the LJSpeech-1.1 directory")
    parser.add_argument("data_dir", help="output: DATA/{train,dev,eval}")
    parser.add_argument("--n-dev", type=int, default=100)
    parser.add_argument("--n-eval", type=int, default=100)
    args = parser.parse_args(argv)

    corpus = os.path.abspath(args.corpus)
    texts = {}
    with open(os.path.join(corpus, "metadata.csv"), encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            fields = line.split("|")
            utt = fields[0].strip()
            text = fields[2] if len(fields) > 2 and fields[2].strip() else fields[1] if len(fields) > 1 else ""
            text = " ".join(text.split())
            if not text:
                continue
            texts[utt] = text
    missing = [u for u in texts if not os.path.isfile(os.path.join(corpus, "wavs", f"{u}.wav"))]
    for u in missing:
        del texts[u]
    ids = sorted(texts, key=lambda u: u.encode())
    if len(ids) <= args.n_dev + args.n_eval:
        sys.exit(f"{sys.argv[0]}: only {len(ids)} utterances; need more than {args.n_dev + args.n_eval}")
    n_train = len(ids) - args.n_dev - args.n_eval
    splits = {"train": ids[:n_train], "dev": ids[n_train:n_train + args.n_dev], "eval": ids[n_train + args.n_dev:]}
    for name, utts in splits.items():
        write_data_dir(
            os.path.join(args.data_dir, name),
            {u: os.path.join(corpus, "wavs", f"{u}.wav") for u in utts},
            {u: SPEAKER for u in utts},
            {u: texts[u] for u in utts},
        )
    print(f"{sys.argv[0]}: " + ", ".join(f"{k} {len(v)}" for k, v in splits.items())
          + (f"; {len(missing)} listed without a wav file" if missing else ""))


if __name__ == "__main__":
    main()
