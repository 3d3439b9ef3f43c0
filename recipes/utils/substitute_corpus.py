#!/usr/bin/env python3
"""Lay out real speech from Kaldi data directories in the on-disk layout of another corpus.

For users (and this project's checks) without LJSpeech, VCTK or LibriTTS: the speech of the
given data directories (for example the bundled asterisk_en corpus, 16 kHz) is resampled to the
target corpus's own sample rate and format and written with that corpus's file names,
transcripts and split structure, so the target recipe runs unchanged from stage 0 on it:

    python recipes/utils/substitute_corpus.py --layout vctk \\
        egs/asterisk_en/voc1/data/{train,dev,eval} /tmp/vctk_substitute
    cd egs/vctk/voc1 && ./run.sh --stage 0 --download-dir /tmp/vctk_substitute

What a recipe measures on such a tree says that its scripts, feature settings and model
configuration work end to end at the corpus's rate; it says nothing about the corpus itself
(upsampled 16 kHz speech has no energy above 8 kHz, and the speaker is not the corpus's).

Layouts (utterances are taken in the order given, data dir by data dir):

* ``ljspeech``: ``LJSpeech-1.1/wavs/LJ001-NNNN.wav`` (22.05 kHz, 16-bit) and ``metadata.csv``
  (``id|text|text``). The recipe's split is by id: the last 100 are eval, the 100 before dev.
* ``vctk``: ``VCTK-Corpus-0.92/wav48_silence_trimmed/<spk>/<spk>_NNN_mic1.flac`` (48 kHz FLAC)
  and ``txt/<spk>/<spk>_NNN.txt``; utterances are dealt round-robin over ``--speakers``
  pseudo-speakers ``p901, p902, ...``. The recipe takes the last 2 of each speaker as eval and
  the 2 before as dev.
* ``libritts``: ``LibriTTS/<subset>/<spk>/<chapter>/<spk>_<chapter>_000000_NNNNNN.wav`` (24 kHz)
  with ``.normalized.txt`` and ``.original.txt``; the first data dir goes to
  ``train-clean-100``, the second to ``dev-clean``, the third to ``test-clean`` (one data dir:
  everything to ``train-clean-100``), as speaker 9001, chapter 1.

Nothing is half-written: each file is written atomically, and a bad utterance stops the run
with its name.
"""

from __future__ import annotations

import argparse
import os
import sys

LAYOUTS = {"ljspeech": 22050, "vctk": 48000, "libritts": 24000}
LIBRITTS_SUBSETS = ("train-clean-100", "dev-clean", "test-clean")


def _utterances(data_dirs):
    from vocoflow.audio.datadir import DataDir

    groups = []
    for d in data_dirs:
        dd = DataDir(d, check_audio=False).check()
        groups.append(dd.utterances())
    return groups


def _text(utt) -> str:
    return (utt.text or utt.utt_id).replace("\n", " ").strip()


def _write_audio(path, wav, rate, fmt):
    from vocoflow.audio.io import save_wav

    os.makedirs(os.path.dirname(path), exist_ok=True)
    save_wav(path, wav, rate, format=fmt)


def _write_text(path, text):
    from vocoflow.audio._files import atomic_write_text

    os.makedirs(os.path.dirname(path), exist_ok=True)
    atomic_write_text(path, text)


def build(layout: str, data_dirs, out_dir: str, speakers: int = 4, limit: int | None = None) -> int:
    """Write the tree; returns the number of utterances written."""
    from vocoflow.audio.datadir import load_utterance

    rate = LAYOUTS[layout]
    groups = _utterances(data_dirs)
    if limit is not None:
        groups = [g[:limit] for g in groups]
    n = 0
    if layout == "ljspeech":
        root = os.path.join(out_dir, "LJSpeech-1.1")
        lines = []
        for utt in (u for g in groups for u in g):
            n += 1
            uid = f"LJ001-{n:04d}"
            wav, _ = load_utterance(utt, rate)
            _write_audio(os.path.join(root, "wavs", uid + ".wav"), wav, rate, "WAV")
            text = _text(utt).replace("|", " ")
            lines.append(f"{uid}|{text}|{text}")
        _write_text(os.path.join(root, "metadata.csv"), "\n".join(lines) + "\n")
    elif layout == "vctk":
        root = os.path.join(out_dir, "VCTK-Corpus-0.92")
        counts = [0] * speakers
        for i, utt in enumerate(u for g in groups for u in g):
            s = i % speakers
            counts[s] += 1
            spk = f"p{901 + s}"
            stem = f"{spk}_{counts[s]:03d}"
            wav, _ = load_utterance(utt, rate)
            _write_audio(os.path.join(root, "wav48_silence_trimmed", spk, stem + "_mic1.flac"), wav, rate, "FLAC")
            _write_text(os.path.join(root, "txt", spk, stem + ".txt"), _text(utt) + "\n")
            n += 1
    else:
        root = os.path.join(out_dir, "LibriTTS")
        for k, (subset, group) in enumerate(zip(LIBRITTS_SUBSETS, groups)):
            spk = str(9001 + k)  # LibriTTS's subsets have disjoint speakers
            d = os.path.join(root, subset, spk, "1")
            for j, utt in enumerate(group):
                stem = f"{spk}_1_000000_{j:06d}"
                wav, _ = load_utterance(utt, rate)
                _write_audio(os.path.join(d, stem + ".wav"), wav, rate, "WAV")
                _write_text(os.path.join(d, stem + ".normalized.txt"), _text(utt))
                _write_text(os.path.join(d, stem + ".original.txt"), _text(utt))
                n += 1
    return n


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--layout", required=True, choices=sorted(LAYOUTS))
    p.add_argument("--speakers", type=int, default=4, help="vctk: pseudo-speakers (default 4)")
    p.add_argument("--limit", type=int, default=None, help="at most this many utterances per data dir")
    p.add_argument("data_dirs", nargs="+", help="Kaldi data dirs (wav.scp, text), then the output dir")
    args = p.parse_args(argv)
    if len(args.data_dirs) < 2:
        p.error("give at least one data dir and the output dir")
    *data_dirs, out_dir = args.data_dirs
    if args.layout == "libritts" and len(data_dirs) > len(LIBRITTS_SUBSETS):
        p.error(f"libritts takes at most {len(LIBRITTS_SUBSETS)} data dirs (train, dev, test)")
    if args.speakers < 1:
        p.error("--speakers must be >= 1")
    from vocoflow.audio.datadir import DataDirError
    from vocoflow.audio.io import AudioError

    try:
        n = build(args.layout, data_dirs, out_dir, args.speakers, args.limit)
    except (DataDirError, AudioError) as e:
        print(f"substitute_corpus: {e}", file=sys.stderr)
        return 1
    print(f"substitute_corpus: wrote {n} utterances in the {args.layout} layout "
          f"({LAYOUTS[args.layout]} Hz) under {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
