"""Training on TTS-predicted mels: ``vocoflow train --train-feats-scp FILE``.

A vocoder that will run behind a TTS model hears that model's mels, which are smoother than the
analysed ones; training (or fine-tuning) on ground-truth-aligned (GTA) mels -- the TTS model run
with teacher forcing on the training utterances -- closes that gap (Shen et al., 2018).
:class:`GTADataset` is the training dump with its mels replaced by those of FILE, a Kaldi
``feats.scp`` keyed by utterance id; the audio (and F0) still come from the dump.

FILE's mels are raw log-mels of the dump's front end (``feats_config.yaml``: the same log base
and floor), ``(frames, n_mels)``, as a TTS model trained on vocoflow's features predicts them;
when the dump is normalised (``norm_stats.npz``) they are normalised with its statistics.
Checked before training: every utterance of the dump has a mel in FILE, each has ``n_mels``
bins, finite values that do not look normalised already, and a frame count within
``tolerance`` (default 2) of the dump's; both streams are then cut to the shorter one. Entries
are ark offsets or ``.npy`` files (pipes are refused: nothing runs). Errors name FILE and the
utterance.
"""

from __future__ import annotations

import os

import numpy as np

from vocoflow.audio import AudioMelDataset
from vocoflow.audio.kaldi_io import load_feat, read_scp

__all__ = ["GTADataset", "DEFAULT_TOLERANCE"]

DEFAULT_TOLERANCE = 2


class GTADataset(AudioMelDataset):
    """:class:`~vocoflow.audio.AudioMelDataset` of ``dump_dir`` with the mels of ``feats_scp``."""

    def __init__(self, dump_dir, feats_scp, segment_length=None, *, seed: int = 0, short: str = "pad",
                 tolerance: int = DEFAULT_TOLERANCE):
        super().__init__(dump_dir, segment_length, seed=seed, short=short)
        self.gta_scp = os.fspath(feats_scp)
        self.tolerance = int(tolerance)
        if not os.path.isfile(self.gta_scp):
            raise FileNotFoundError(f"{self.gta_scp}: no such feats.scp (--train-feats-scp)")
        gta = read_scp(self.gta_scp)
        missing = [u for u in self.utt_ids if u not in gta]
        if missing:
            raise ValueError(f"{self.gta_scp}: no mel for utterance {missing[0]!r} of {self.dump_dir} "
                             f"({len(missing)} of {len(self.utt_ids)} missing)")
        self._gta = {u: gta[u] for u in self.utt_ids}
        for u, value in self._gta.items():
            if value.rstrip().endswith("|"):
                raise ValueError(f"{self.gta_scp}: utterance {u!r}: pipe entries are not run "
                                 f"(write the mels to an ark or .npy files)")
        self._dump_frames = {}
        self._check_all()

    def _raw_gta(self, utt: str) -> np.ndarray:
        return load_feat(self._gta[utt], self.config.n_mels, name=f"{self.gta_scp}: utterance {utt!r}",
                         fd_dict=self._files(), scp_path=self.gta_scp)

    def _check_all(self) -> None:
        from vocoflow.vocoders.synthesis import looks_normalized

        floor = None if self.config.log == "none" else self.config.log_floor
        for u in self.utt_ids:
            mel = self._raw_gta(u)
            if not np.isfinite(mel).all():
                raise ValueError(f"{self.gta_scp}: utterance {u!r}: the mel has NaN or infinite values")
            frames = self.num_frames.get(u)
            if frames is None:
                frames = super().load(u)[1].shape[0]
            self._dump_frames[u] = frames
            if abs(mel.shape[0] - frames) > self.tolerance:
                raise ValueError(f"{self.gta_scp}: utterance {u!r}: {mel.shape[0]} frames, but the audio "
                                 f"of {self.dump_dir} has {frames} frames (more than {self.tolerance} "
                                 f"apart: not aligned with it)")
            verdict, reason = looks_normalized(mel.T, None if self.stats is None else self.stats.mean,
                                               None if self.stats is None else self.stats.scale, floor)
            if verdict:
                raise ValueError(f"{self.gta_scp}: utterance {u!r}: the mel looks normalised ({reason}); "
                                 f"give raw log-mels (they are normalised with the dump's statistics)")

    def load(self, utt: str) -> tuple[np.ndarray, np.ndarray]:
        """Audio of the dump and the GTA mel of ``utt``, both cut to the shorter one's frames."""
        audio = self._audio(utt)
        mel = self._raw_gta(utt)
        if self.stats is not None:
            mel = self.stats.normalize(mel)
        frames = min(self.config.segment_frames(len(audio)), mel.shape[0])
        return audio[: self.config.num_samples(frames)], np.ascontiguousarray(mel[:frames], dtype=np.float32)

    def load_f0(self, utt: str, frames: int) -> np.ndarray:
        """The dump's F0 track of ``utt``, cut to ``frames`` (the GTA-aligned length)."""
        f0 = super().load_f0(utt, self._dump_frames[utt])
        return f0[:frames]
