"""Audio front end of vocoflow: mel features, audio I/O, Kaldi data/dump directories, datasets.

This layer imports only torch, torchaudio, librosa, soundfile, kaldiio and numpy (the layering rule).

- :mod:`~vocoflow.audio.mel`: :class:`MelConfig`, presets, :class:`MelSpectrogram`, :func:`align`
- :mod:`~vocoflow.audio.io`: :func:`load_audio`, :func:`save_wav`, :class:`AudioError`
- :mod:`~vocoflow.audio.datadir`: Kaldi data directories and their validation
- :mod:`~vocoflow.audio.wav_scp`: the audio of one ``wav.scp`` value (file, ark entry or pipe)
- :mod:`~vocoflow.audio.kaldi_io`: Kaldi ark/scp I/O (:func:`read_feats`, :func:`as_frames_by_mels`)
- :mod:`~vocoflow.audio.dump`: dump directories, :func:`preprocess`
- :mod:`~vocoflow.audio.stats`: :class:`Stats` (``Stats.load``: the reader of ``stats.npz``),
  :func:`compute_stats`, :func:`normalize`
- :mod:`~vocoflow.audio.dataset`: :class:`AudioMelDataset`, :func:`collate_eval`
"""

from .datadir import (
    DataDir,
    DataDirError,
    Issue,
    Utterance,
    load_utterance,
    validate_data_dir,
    write_data_dir,
)
from .dataset import AudioMelDataset, collate_eval
from .dump import PreprocessResult, preprocess
from .io import AudioError, from_int16, load_audio, resample, save_wav, to_int16
from .kaldi_io import ArkScpWriter, FeatureShapeError, as_frames_by_mels, load_feat, read_feats, read_scp
from .mel import PRESETS, MelConfig, MelSpectrogram, align, get_preset, list_presets
from .stats import Stats, compute_stats, normalize

__all__ = [
    "MelConfig",
    "MelSpectrogram",
    "PRESETS",
    "get_preset",
    "list_presets",
    "align",
    "AudioError",
    "load_audio",
    "save_wav",
    "resample",
    "to_int16",
    "from_int16",
    "DataDir",
    "DataDirError",
    "Issue",
    "Utterance",
    "validate_data_dir",
    "write_data_dir",
    "load_utterance",
    "read_scp",
    "read_feats",
    "load_feat",
    "as_frames_by_mels",
    "FeatureShapeError",
    "ArkScpWriter",
    "preprocess",
    "PreprocessResult",
    "Stats",
    "compute_stats",
    "normalize",
    "AudioMelDataset",
    "collate_eval",
]
