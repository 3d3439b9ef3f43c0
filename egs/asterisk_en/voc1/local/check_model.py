#!/usr/bin/env python
"""Exactness checks of a trained vocoder on real speech (RESULTS.md): for the first N utterances
of a normalised dump, ``audio -> z -> audio`` (the flow's forward then inverse pass, tracked F0)
and chunked against unchunked synthesis (predicted F0, the same noise).

    python local/check_model.py MODEL_DIR DUMP_DIR [N] [CHUNK_FRAMES]
"""

import sys

import torch

from vocoflow.audio import AudioMelDataset
from vocoflow.vocoders import load
from vocoflow.vocoders.synthesis import chunked_infer

model_dir, dump = sys.argv[1], sys.argv[2]
n = int(sys.argv[3]) if len(sys.argv) > 3 else 4
chunk = int(sys.argv[4]) if len(sys.argv) > 4 else 50
voc = load(model_dir)
m = voc.model.eval()
ds = AudioMelDataset(dump, segment_length=None)
inv, chk = [], []
for u in ds.utt_ids[:n]:
    audio, mel = ds.load(u)
    mel = torch.tensor(mel.T)[None]
    hop = m.hop_length
    x = torch.tensor(audio[: mel.shape[-1] * hop], dtype=torch.float32)[None]
    f0 = torch.tensor(ds.load_f0(u, mel.shape[-1]), dtype=torch.float32)[None] if m.uses_excitation else None
    with m.inference_context():
        z, _ = m(x, mel, f0=f0)
        s = torch.exp(m.prior_log_scale(mel)) if m.prior_net is not None else torch.ones_like(z)
        back = m.infer(mel, sigma=1.0, noise=z / s, f0=f0)
        inv.append(float((back - x).abs().max()))
        noise = torch.randn(1, mel.shape[-1] * hop, generator=torch.Generator().manual_seed(0))
        whole = m.infer(mel, sigma=0.6, noise=noise)
        parts = chunked_infer(m, mel, 0.6, noise, chunk)
        chk.append(float((parts - whole).abs().max()))
    print(f"{u}: {mel.shape[-1]} frames, |audio - inverse(forward(audio))| max {inv[-1]:.2e}, "
          f"|chunked - unchunked| max {chk[-1]:.2e} (chunks of {chunk} frames)")
print(f"max over {len(inv)} utterances: inverse {max(inv):.2e}, chunked {max(chk):.2e}")
