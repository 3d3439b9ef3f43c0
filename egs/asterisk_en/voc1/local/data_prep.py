#!/usr/bin/env python
"""Write Kaldi data directories train/dev/eval for the Asterisk English prompts.

Each decoded prompt ``WAV_DIR/<sub>/<name>.wav`` is one utterance of speaker ``allison``:
utterance id ``allison_<sub>-<name>`` (``/`` becomes ``-``), prompt id ``<sub>/<name>`` (the
key of ``core-sounds-en.txt``). Left out, and counted in the summary:

- ``silence/*`` (silence of 1..10 s), names starting with ``beep`` or ``tone``;
- prompts without a transcript, or whose transcript only describes a sound
  (``[ascending tones]``, ``[sound of monkeys screaming]``); other bracketed notes
  (``at [@]``) are removed from the text.

``dev`` and ``eval`` are the prompts listed in ``local/dev_list.txt`` / ``local/eval_list.txt``
(fixed; see ``local/make_splits.py``); ``train`` is everything else.
"""

import argparse
import os
import re
import sys

from vocoflow.audio import write_data_dir

SPEAKER = "allison"
_BRACKETS = re.compile(r"\[[^\]]*\]")


def read_transcripts(path):
    texts = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith(";") or ":" not in line:
                continue
            key, _, text = line.partition(":")
            texts[key.strip()] = text.strip()
    return texts


def clean_text(text):
    """Transcript without bracketed sound descriptions; None if nothing spoken is left."""
    if text is None or text.startswith("["):
        return None
    cleaned = " ".join(_BRACKETS.sub(" ", text).split())
    return cleaned or None


def skip_reason(prompt_id, text):
    parts = prompt_id.split("/")
    name = parts[-1]
    if parts[0] == "silence":
        return "silence"
    if name.startswith(("beep", "tone")):
        return "beep/tone"
    if text is None:
        return "no transcript"
    if clean_text(text) is None:
        return "non-speech (transcript describes a sound)"
    return None


def utt_id_of(prompt_id):
    return f"{SPEAKER}_{prompt_id.replace('/', '-')}"


def read_list(path):
    with open(path, encoding="utf-8") as f:
        return [line.split("#")[0].strip() for line in f if line.split("#")[0].strip()]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("wav_dir", help="decoded WAV files (downloads/wav)")
    parser.add_argument("transcripts", help="core-sounds-en.txt")
    parser.add_argument("data_dir", help="output: DATA/{train,dev,eval}")
    here = os.path.dirname(os.path.abspath(__file__))
    parser.add_argument("--dev-list", default=os.path.join(here, "dev_list.txt"))
    parser.add_argument("--eval-list", default=os.path.join(here, "eval_list.txt"))
    args = parser.parse_args(argv)

    texts = read_transcripts(args.transcripts)
    wav_dir = os.path.abspath(args.wav_dir)
    prompts = {}
    skipped = {}
    for root, dirs, files in os.walk(wav_dir):
        dirs.sort()
        for name in sorted(files):
            if not name.endswith(".wav"):
                continue
            rel = os.path.relpath(os.path.join(root, name), wav_dir)[: -len(".wav")].replace(os.sep, "/")
            reason = skip_reason(rel, texts.get(rel))
            if reason:
                skipped.setdefault(reason, []).append(rel)
                continue
            prompts[rel] = os.path.join(root, name)
    ids = {}
    for p in prompts:
        u = utt_id_of(p)
        if u in ids or any(c.isspace() for c in u):
            print(f"{sys.argv[0]}: prompt {p!r} gives a duplicate or bad utterance id {u!r}", file=sys.stderr)
            return 1
        ids[u] = p

    sets = {"dev": read_list(args.dev_list), "eval": read_list(args.eval_list)}
    if set(sets["dev"]) & set(sets["eval"]):
        print(f"{sys.argv[0]}: dev and eval lists overlap", file=sys.stderr)
        return 1
    held_out = set()
    for name, listed in sets.items():
        missing = [p for p in listed if p not in prompts]
        for p in missing:
            print(f"{sys.argv[0]}: warning: {name} prompt {p!r} is not in the corpus (or is excluded)", file=sys.stderr)
        sets[name] = [p for p in listed if p in prompts]
        if not sets[name]:
            print(f"{sys.argv[0]}: no {name} prompt found", file=sys.stderr)
            return 1
        held_out.update(sets[name])
    sets["train"] = [p for p in prompts if p not in held_out]

    for name in ("train", "dev", "eval"):
        chosen = sets[name]
        write_data_dir(
            os.path.join(args.data_dir, name),
            wav_scp={utt_id_of(p): prompts[p] for p in chosen},
            utt2spk={utt_id_of(p): SPEAKER for p in chosen},
            text={utt_id_of(p): clean_text(texts[p]) for p in chosen},
        )
        print(f"{name}: {len(chosen)} utterances", file=sys.stderr)
    for reason, rels in sorted(skipped.items()):
        print(f"skipped ({reason}): {len(rels)}: {' '.join(rels[:8])}{' ...' if len(rels) > 8 else ''}",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
