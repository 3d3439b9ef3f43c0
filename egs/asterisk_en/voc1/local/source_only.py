#!/usr/bin/env python
"""Synthesise a set's raw mels with only the mel source of a ``source: mel`` vocoder (the flow's
mean, no flow): the "mel source alone" row of RESULTS.md.

    python local/source_only.py MODEL_DIR FEATS_SCP OUT_DIR [--f0-scp F0_SCP] [--refine R]

F0 comes from the vocoder's own pitch predictor unless ``--f0-scp`` gives tracked F0;
``--refine`` overrides the source's rounds of mel matching (the model's ``source_refine``).
"""

import argparse
import os

import torch
from tqdm import tqdm

from vocoflow.audio.io import save_wav
from vocoflow.audio.kaldi_io import load_f0, read_feats, read_scp
from vocoflow.vocoders import load

p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
p.add_argument("model")
p.add_argument("feats_scp")
p.add_argument("out_dir")
p.add_argument("--f0-scp")
p.add_argument("--refine", type=int)
a = p.parse_args()
voc = load(a.model)
if a.refine is not None:
    voc.model.source.refine = a.refine
f0s = read_scp(a.f0_scp) if a.f0_scp else {}
os.makedirs(a.out_dir, exist_ok=True)
n = 0
for utt, mel in tqdm(list(read_feats(a.feats_scp, voc.n_mels)), desc="source", unit="utt"):
    f0 = torch.as_tensor(load_f0(f0s[utt], mel.shape[0])) if a.f0_scp else None
    y = voc.source(mel.T, f0=f0)
    save_wav(os.path.join(a.out_dir, f"{utt}.wav"), y.clamp(-1, 1).numpy(), voc.sample_rate)
    n += 1
print(f"{a.out_dir}: wrote {n} waveform(s)")
