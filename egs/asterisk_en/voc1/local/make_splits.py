#!/usr/bin/env python
"""How local/dev_list.txt and local/eval_list.txt were chosen (run once; the lists are committed).

Candidates: top-level prompts (not digits/, letters/, phonetic/, ... subdirectories) kept by
data_prep.py whose transcript has at least 4 words. They are ordered by the SHA-1 of their
prompt id; the first 12 are dev, the next 24 eval. Deterministic, independent of the audio.

Usage: local/make_splits.py downloads/core-sounds-en.txt downloads/wav
"""

import hashlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from data_prep import clean_text, read_transcripts, skip_reason  # noqa: E402

N_DEV, N_EVAL, MIN_WORDS = 12, 24, 4


def main():
    texts = read_transcripts(sys.argv[1])
    wav_dir = sys.argv[2]
    candidates = []
    for name in sorted(os.listdir(wav_dir)):
        prompt = name[: -len(".wav")] if name.endswith(".wav") else None
        if prompt is None or skip_reason(prompt, texts.get(prompt)):
            continue
        if len(clean_text(texts[prompt]).split()) >= MIN_WORDS:
            candidates.append(prompt)
    candidates.sort(key=lambda p: hashlib.sha1(p.encode()).hexdigest())
    here = os.path.dirname(os.path.abspath(__file__))
    header = "# fixed {} prompts of asterisk_en (chosen by local/make_splits.py; do not edit)\n"
    with open(os.path.join(here, "dev_list.txt"), "w") as f:
        f.write(header.format("dev") + "".join(p + "\n" for p in sorted(candidates[:N_DEV])))
    with open(os.path.join(here, "eval_list.txt"), "w") as f:
        f.write(header.format("eval") + "".join(p + "\n" for p in sorted(candidates[N_DEV : N_DEV + N_EVAL])))
    print(f"{len(candidates)} candidates; wrote {N_DEV} dev and {N_EVAL} eval prompts")


if __name__ == "__main__":
    main()
