"""Training and evaluation data over a dump directory (see :mod:`vocoflow.audio.dump`).

:class:`AudioMelDataset` yields aligned ``(audio, mel)`` pairs: random fixed-length segments for
training (``segment_length`` samples, a multiple of the hop; the mel segment has
``segment_length // hop`` frames from the same offset) or whole utterances for evaluation
(``segment_length=None``, batch them with :meth:`AudioMelDataset.collate` / :func:`collate_eval`).

Randomness is a function of ``(seed, epoch, index)`` only (``numpy.random.default_rng`` seeded
with that triple), so the same epoch gives the same segments whatever the number of DataLoader
workers or the order they are fetched in; call :meth:`~AudioMelDataset.set_epoch` before each
epoch. Archive files are opened lazily in each worker process.
"""

from __future__ import annotations

import functools
import os

import numpy as np
import torch
from torch.utils.data import Dataset

from .dump import read_dump_wav_scp, read_utt2num_frames, require_complete
from .kaldi_io import load_f0, load_feat, read_scp
from .mel import MelConfig
from .stats import Stats
from .wav_scp import load_wav_entry

__all__ = ["AudioMelDataset", "collate_eval"]


class AudioMelDataset(Dataset):
    """Aligned audio/mel items from a dump directory.

    Items are dicts: ``utt_id`` (str), ``audio`` float32 ``(samples,)``, ``mel`` float32
    ``(n_mels, frames)`` and ``length`` (valid samples; less than ``segment_length`` only for
    a padded short utterance). ``short`` says what to do with utterances shorter than a
    segment: ``"pad"`` (zeros for audio, the feature value of silence for the mel) or
    ``"skip"`` (left out of the index).
    """

    def __init__(
        self,
        dump_dir: str | os.PathLike,
        segment_length: int | None = None,
        *,
        seed: int = 0,
        short: str = "pad",
        utt_ids: list[str] | None = None,
    ):
        self.dump_dir = os.fspath(dump_dir)
        require_complete(self.dump_dir)
        self.config = MelConfig.load(os.path.join(self.dump_dir, "feats_config.yaml"))
        hop = self.config.hop_length
        if segment_length is not None and (segment_length <= 0 or segment_length % hop):
            raise ValueError(f"segment_length must be a positive multiple of hop_length {hop}, got {segment_length}")
        if short not in ("pad", "skip"):
            raise ValueError(f"short must be 'pad' or 'skip', got {short!r}")
        self.segment_length = segment_length
        self.seed = int(seed)
        self.short = short
        self.epoch = 0
        self._feats_scp = os.path.join(self.dump_dir, "feats.scp")
        self._wav_scp = os.path.join(self.dump_dir, "wav.scp")
        feats = read_scp(self._feats_scp)
        wavs = read_dump_wav_scp(self._wav_scp)  # ark entries only: no pipes run in training
        if set(feats) != set(wavs):
            diff = sorted(set(feats) ^ set(wavs))
            raise ValueError(f"{self.dump_dir}: feats.scp and wav.scp list different utterances (e.g. {diff[0]!r})")
        frames_path = os.path.join(self.dump_dir, "utt2num_frames")
        num_frames = read_utt2num_frames(frames_path) if os.path.isfile(frames_path) else {}
        ids = sorted(feats, key=lambda k: k.encode()) if utt_ids is None else list(utt_ids)
        unknown = [u for u in ids if u not in feats]
        if unknown:
            raise KeyError(f"{self.dump_dir}: unknown utterance {unknown[0]!r}")
        if segment_length is not None and short == "skip":
            need = self.config.segment_frames(segment_length)
            ids = [u for u in ids if self._frames(u, feats, num_frames) >= need]
        self.utt_ids = ids
        self._feats = {u: feats[u] for u in ids}
        self._wavs = {u: wavs[u] for u in ids}
        # the F0 stream (dumps made with a pitch tracker): items then carry "f0"
        self._f0_scp = os.path.join(self.dump_dir, "f0.scp")
        self._f0 = None
        if os.path.isfile(self._f0_scp):
            f0s = read_scp(self._f0_scp)
            missing = [u for u in ids if u not in f0s]
            if missing:
                raise ValueError(f"{self._f0_scp}: no F0 for utterance {missing[0]!r} "
                                 f"({len(missing)} of {len(ids)} missing); rerun preprocess with --pitch")
            self._f0 = {u: f0s[u] for u in ids}
        self.num_frames = {u: num_frames[u] for u in ids if u in num_frames}
        norm = os.path.join(self.dump_dir, "norm_stats.npz")
        self.stats = Stats.load(norm) if os.path.isfile(norm) else None
        floor = np.full(self.config.n_mels, self.config.log_floor, dtype=np.float64)
        self.pad_value = (self.stats.normalize(floor[None])[0] if self.stats else floor).astype(np.float32)
        self._fd: dict | None = None
        self._pid: int | None = None

    def _frames(self, utt, feats, num_frames) -> int:
        if utt in num_frames:
            return num_frames[utt]
        return load_feat(feats[utt], self.config.n_mels, scp_path=self._feats_scp).shape[0]

    # ---- epochs and workers
    def set_epoch(self, epoch: int) -> None:
        """Select the random segments of ``epoch`` (call in every worker's copy: with
        persistent workers, recreate the DataLoader iterator after calling it)."""
        self.epoch = int(epoch)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_fd"], state["_pid"] = None, None  # open files stay in the process that opened them
        return state

    def _files(self) -> dict:
        pid = os.getpid()
        if self._pid != pid or self._fd is None:
            self._fd, self._pid = {}, pid
        return self._fd

    def close(self) -> None:
        if self._fd and self._pid == os.getpid():
            for f in self._fd.values():
                f.close()
        self._fd = None

    def __len__(self) -> int:
        return len(self.utt_ids)

    # ---- reading
    def _audio(self, utt: str) -> np.ndarray:
        value = self._wavs[utt]
        # as stored: no resampling, no content checks (preprocess checked it)
        data, rate = load_wav_entry(value, name=f"{value} (utterance {utt})", check=False,
                                    scp_path=self._wav_scp, fd_dict=self._files())
        if rate != self.config.sample_rate:
            raise ValueError(f"{self._wav_scp}: utterance {utt}: {rate} Hz audio, "
                             f"features are for {self.config.sample_rate} Hz")
        return data

    def load(self, utt: str) -> tuple[np.ndarray, np.ndarray]:
        """Whole utterance: float32 audio ``(frames*hop,)`` and mel ``(frames, n_mels)``."""
        mel = load_feat(self._feats[utt], self.config.n_mels, name=f"{self._feats_scp}: utterance {utt}",
                        fd_dict=self._files(), scp_path=self._feats_scp)
        audio = self._audio(utt)
        if len(audio) != self.config.num_samples(mel.shape[0]):
            raise ValueError(
                f"{self.dump_dir}: utterance {utt}: {len(audio)} samples do not match {mel.shape[0]} "
                f"frames x hop {self.config.hop_length}"
            )
        return audio, mel

    @property
    def has_f0(self) -> bool:
        """Whether the dump holds an F0 track per utterance (``f0.scp``)."""
        return self._f0 is not None

    def load_f0(self, utt: str, frames: int) -> np.ndarray:
        """F0 in Hz ``(frames,)`` (``0`` = unvoiced) of one utterance, checked against its
        number of mel frames."""
        if self._f0 is None:
            raise ValueError(f"{self.dump_dir}: no f0.scp (preprocess this dump with --pitch dio)")
        return load_f0(self._f0[utt], frames, name=f"{self._f0_scp}: utterance {utt}",
                       fd_dict=self._files(), scp_path=self._f0_scp)

    def rng(self, index: int) -> np.random.Generator:
        """The generator of item ``index`` in the current epoch."""
        return np.random.default_rng([self.seed, self.epoch, int(index)])

    def __getitem__(self, index: int) -> dict:
        utt = self.utt_ids[index]
        audio, mel = self.load(utt)
        f0 = self.load_f0(utt, mel.shape[0]) if self._f0 is not None else None
        hop = self.config.hop_length
        if self.segment_length is None:
            item = {"utt_id": utt, "audio": torch.from_numpy(audio), "mel": torch.from_numpy(mel.T.copy()),
                    "length": len(audio)}
            if f0 is not None:
                item["f0"] = torch.from_numpy(np.array(f0, dtype=np.float32))
            return item
        seg_frames = self.config.segment_frames(self.segment_length)
        frames = mel.shape[0]
        if frames >= seg_frames:
            start = int(self.rng(index).integers(0, frames - seg_frames + 1))
            a = audio[start * hop : (start + seg_frames) * hop]
            m = mel[start : start + seg_frames]
            f = f0[start : start + seg_frames] if f0 is not None else None
            length = self.segment_length
        else:
            a = np.zeros(self.segment_length, dtype=np.float32)
            a[: len(audio)] = audio
            m = np.empty((seg_frames, mel.shape[1]), dtype=np.float32)
            m[:] = self.pad_value
            m[:frames] = mel
            f = None
            if f0 is not None:
                f = np.zeros(seg_frames, dtype=np.float32)
                f[:frames] = f0
            length = len(audio)
        item = {
            "utt_id": utt,
            "audio": torch.from_numpy(np.ascontiguousarray(a)),
            "mel": torch.from_numpy(np.ascontiguousarray(m.T)),
            "length": length,
        }
        if f is not None:
            item["f0"] = torch.from_numpy(np.array(f, dtype=np.float32))
        return item

    @property
    def collate(self):
        """:func:`collate_eval` padding mels with this dump's silence value (picklable)."""
        return functools.partial(collate_eval, mel_pad_value=self.pad_value, hop_length=self.config.hop_length)


def collate_eval(batch: list[dict], mel_pad_value=0.0, hop_length: int | None = None) -> dict:
    """Pad whole utterances to a batch.

    Returns ``utt_id`` (list), ``audio`` ``(B, T_max)`` zero-padded, ``mel``
    ``(B, n_mels, F_max)`` padded with ``mel_pad_value`` (scalar or per-bin), ``lengths``
    (samples) and ``mel_lengths`` (frames) as int64 tensors.

    >>> items = [{"utt_id": "a", "audio": torch.ones(8), "mel": torch.ones(2, 2)},
    ...          {"utt_id": "b", "audio": torch.ones(4), "mel": torch.ones(2, 1)}]
    >>> b = collate_eval(items, mel_pad_value=-1.0)
    >>> b["audio"].shape, b["mel"][1].tolist(), b["lengths"].tolist()
    (torch.Size([2, 8]), [[1.0, -1.0], [1.0, -1.0]], [8, 4])
    """
    if not batch:
        raise ValueError("empty batch")
    n_mels = batch[0]["mel"].shape[0]
    t_max = max(item["audio"].shape[-1] for item in batch)
    f_max = max(item["mel"].shape[-1] for item in batch)
    audio = torch.zeros(len(batch), t_max, dtype=batch[0]["audio"].dtype)
    pad = torch.as_tensor(np.asarray(mel_pad_value, dtype=np.float32)).to(batch[0]["mel"].dtype)
    mel = torch.empty(len(batch), n_mels, f_max, dtype=batch[0]["mel"].dtype)
    mel[:] = pad.reshape(-1, 1) if pad.dim() == 1 else pad
    lengths, mel_lengths = [], []
    for i, item in enumerate(batch):
        a, m = item["audio"], item["mel"]
        if m.shape[0] != n_mels:
            raise ValueError(f"item {item.get('utt_id', i)}: {m.shape[0]} mel bins, expected {n_mels}")
        if hop_length is not None and a.shape[-1] != m.shape[-1] * hop_length:
            raise ValueError(f"item {item.get('utt_id', i)}: audio and mel are not aligned")
        audio[i, : a.shape[-1]] = a
        mel[i, :, : m.shape[-1]] = m
        lengths.append(int(item.get("length", a.shape[-1])))
        mel_lengths.append(m.shape[-1])
    return {
        "utt_id": [item.get("utt_id") for item in batch],
        "audio": audio,
        "mel": mel,
        "lengths": torch.tensor(lengths, dtype=torch.int64),
        "mel_lengths": torch.tensor(mel_lengths, dtype=torch.int64),
    }
