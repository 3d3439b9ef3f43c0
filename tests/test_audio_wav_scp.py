"""The one reader of a wav.scp value: plain file, ark entry and pipe give the same audio."""

import os

import numpy as np
import pytest
import soundfile as sf

from data_fixtures import tone, write_wav
from vocoflow.audio import ArkScpWriter, AudioError
from vocoflow.audio.wav_scp import load_wav_entry, source_kind, wav_entry_duration


@pytest.fixture
def sources(tmp_path):
    path = write_wav(tmp_path / "a.wav", tone(16000, 0.5, 300))
    pcm, _ = sf.read(path, dtype="int16")
    with ArkScpWriter(str(tmp_path / "w.ark"), str(tmp_path / "w.scp")) as w:
        w.write("a", (16000, pcm))
    ark = open(tmp_path / "w.scp").read().split()[1]
    return {"file": path, "ark": ark, "pipe": f"cat {path} |"}


def test_three_kinds_read_the_same_audio(sources):
    got = {}
    for kind, value in sources.items():
        assert source_kind(value) == kind
        wav, rate = load_wav_entry(value)
        assert rate == 16000 and wav.dtype == np.float32 and wav.ndim == 1
        got[kind] = wav
        assert wav_entry_duration(value) == pytest.approx(0.5)
    assert np.array_equal(got["file"], got["ark"]) and np.array_equal(got["file"], got["pipe"])


def test_segment_and_resampling(sources):
    for value in sources.values():
        wav, rate = load_wav_entry(value, 8000, start=0.1, end=0.3)
        assert rate == 8000 and len(wav) == 1600
    with pytest.raises(AudioError, match="past the end"):
        load_wav_entry(sources["ark"], start=0.1, end=2.0)
    with pytest.raises(AudioError, match="strict mode"):
        load_wav_entry(sources["file"], 8000, strict=True)


def test_relative_entries_resolved_from_the_scp(tmp_path, sources, monkeypatch):
    scp = tmp_path / "w.scp"
    rel = os.path.relpath(sources["ark"], tmp_path)
    monkeypatch.chdir(tmp_path.parent)  # rel does not exist from here
    with pytest.raises(AudioError):
        load_wav_entry(rel)
    wav, _ = load_wav_entry(rel, scp_path=scp)
    assert np.array_equal(wav, load_wav_entry(sources["ark"])[0])


def test_errors_name_the_source_and_the_problem(tmp_path, sources):
    with pytest.raises(AudioError, match=r"^.*nope\.wav: no such file$"):
        load_wav_entry(str(tmp_path / "nope.wav"))
    with pytest.raises(AudioError, match=r"^utt x: command exited with status 1"):
        load_wav_entry("false |", name="utt x")
    with pytest.raises(AudioError, match=r"missing\.ark:5: cannot read audio from ark"):
        load_wav_entry(str(tmp_path / "missing.ark:5"))
    with ArkScpWriter(str(tmp_path / "f.ark"), str(tmp_path / "f.scp")) as w:
        w.write("m", np.zeros((3, 4), np.float32))
    feat = open(tmp_path / "f.scp").read().split()[1]
    with pytest.raises(AudioError, match="ark entry is not audio"):
        load_wav_entry(feat)
    silent = write_wav(tmp_path / "silent.wav", np.zeros(800, np.float32))
    with pytest.raises(AudioError, match=r"silent\.wav: all-silent audio"):
        load_wav_entry(silent)
    assert load_wav_entry(silent, check=False)[0].shape == (800,)
