"""Audio I/O: bad inputs raise AudioError naming the file; resampling, mixdown, atomic writes."""

import logging
import os

import numpy as np
import pytest
import soundfile as sf

from data_fixtures import tone, write_wav
from vocoflow.audio import AudioError, load_audio, save_wav, to_int16
from vocoflow.audio.io import from_int16, run_pipe


def test_good_file(tmp_path):
    p = write_wav(tmp_path / "a.wav", tone(16000, 0.5), 16000)
    wav, sr = load_audio(p, 16000, strict=True)
    assert sr == 16000 and wav.dtype == np.float32 and wav.shape == (8000,)


def test_empty_zero_bytes(tmp_path):
    p = tmp_path / "empty.wav"
    p.write_bytes(b"")
    with pytest.raises(AudioError, match=r"empty\.wav: empty file") as e:
        load_audio(p)
    assert e.value.path == str(p)
    assert isinstance(e.value, ValueError)


def test_empty_zero_samples(tmp_path):
    p = write_wav(tmp_path / "nosamples.wav", np.zeros(0), 16000)
    with pytest.raises(AudioError, match=r"nosamples\.wav: empty audio \(0 samples\)"):
        load_audio(p)


def test_nan_audio(tmp_path):
    x = tone(16000, 0.3)
    x[100:110] = np.nan
    p = write_wav(tmp_path / "nan.wav", x, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"nan\.wav: audio contains NaN or infinite values \(10 of"):
        load_audio(p)
    with pytest.raises(AudioError, match=r"nan\.wav: audio contains NaN"):
        load_audio(p, 22050)  # checked before resampling too


def test_silent_audio(tmp_path):
    p = write_wav(tmp_path / "silent.wav", np.zeros(16000), 16000)
    with pytest.raises(AudioError, match=r"silent\.wav: all-silent audio"):
        load_audio(p)


def test_wrong_rate_strict_and_resampled(tmp_path, caplog):
    p = write_wav(tmp_path / "r8k.wav", tone(8000, 0.5, 300), 8000)
    with pytest.raises(AudioError, match=r"r8k\.wav: sample rate 8000 Hz, expected 16000 Hz \(strict"):
        load_audio(p, 16000, strict=True)
    with caplog.at_level(logging.DEBUG, logger="vocoflow.audio.io"):
        wav, sr = load_audio(p, 16000)
    assert sr == 16000 and len(wav) == 8000
    assert any("resampling" in r.getMessage() and "r8k.wav" in r.getMessage() for r in caplog.records)
    # the tone survives resampling: dominant frequency still 300 Hz
    spec = np.abs(np.fft.rfft(wav))
    assert abs(np.argmax(spec) * 16000 / len(wav) - 300) < 5


def test_corrupt_bytes(tmp_path):
    p = tmp_path / "corrupt.wav"
    p.write_bytes(b"RIFF\x10\x00\x00\x00WAVEnot really a wav file at all" * 3)
    with pytest.raises(AudioError, match=r"corrupt\.wav: cannot read audio"):
        load_audio(p)
    q = tmp_path / "text.flac"
    q.write_text("hello")
    with pytest.raises(AudioError, match=r"text\.flac: cannot read audio"):
        load_audio(q)


def test_missing_file(tmp_path):
    with pytest.raises(AudioError, match=r"nothere\.wav: no such file"):
        load_audio(tmp_path / "nothere.wav")


def test_stereo_is_mixed_down(tmp_path):
    left, right = tone(16000, 0.2, 300), tone(16000, 0.2, 500, seed=1)
    p = tmp_path / "st.wav"
    sf.write(p, np.stack([left, right], 1), 16000, subtype="FLOAT")
    wav, _ = load_audio(p)
    assert wav.ndim == 1 and np.allclose(wav, (left + right) / 2, atol=1e-6)


def test_segment_reading_and_overshoot(tmp_path):
    x = tone(16000, 2.0)
    p = write_wav(tmp_path / "long.wav", x, 16000, subtype="FLOAT")
    wav, _ = load_audio(p, start=0.5, end=1.0)
    assert np.array_equal(wav, x[8000:16000])
    wav, _ = load_audio(p, start=1.5, end=2.3)  # overshoot 0.3 s <= 0.5 s: truncated
    assert len(wav) == 8000
    with pytest.raises(AudioError, match=r"long\.wav: segment end 3\.000 s is past the end"):
        load_audio(p, start=1.0, end=3.0)


def test_bytes_and_pipe(tmp_path):
    p = write_wav(tmp_path / "p.wav", tone(16000, 0.25), 16000)
    data = run_pipe(f"cat {p} |")
    wav, sr = load_audio(data, name="cat p.wav |")
    assert sr == 16000 and len(wav) == 4000
    with pytest.raises(AudioError, match=r"^false \|: command exited with status 1"):
        run_pipe("false |")
    with pytest.raises(AudioError, match="no audio"):
        run_pipe("true |")


def test_save_wav_is_16bit_and_atomic(tmp_path):
    x = tone(22050, 0.3)
    out = tmp_path / "out.wav"
    save_wav(out, x, 22050)
    info = sf.info(out)
    assert (info.samplerate, info.subtype, info.format) == (22050, "PCM_16", "WAV")
    back, _ = sf.read(out, dtype="int16")
    assert np.array_equal(back, to_int16(x))
    assert sorted(os.listdir(tmp_path)) == ["out.wav"]  # no temporary left behind
    # a failing write leaves the previous file intact and no temporary
    with pytest.raises(Exception):
        save_wav(out, np.zeros((2, 2, 2)), 22050)
    assert sorted(os.listdir(tmp_path)) == ["out.wav"]
    assert np.array_equal(sf.read(out, dtype="int16")[0], back)


def test_save_wav_on_a_full_disk_raises_oserror_and_keeps_the_old_file(tmp_path, monkeypatch):
    import errno

    import vocoflow.atomic as atomic

    out = tmp_path / "out.wav"
    save_wav(out, tone(16000, 0.2), 16000)
    old = out.read_bytes()

    class FullDisk:  # the temporary file of a disk that fills after 4 KiB
        def __init__(self, f):
            self.f, self.n = f, 0

        def write(self, b):
            self.n += len(b)
            if self.n > 4096:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.f.write(b)

        def __getattr__(self, name):
            return getattr(self.f, name)

    real = atomic.AtomicFile.__init__

    def init(self, *a, **k):
        real(self, *a, **k)
        self.file = FullDisk(self.file)

    monkeypatch.setattr(atomic.AtomicFile, "__init__", init)
    with pytest.raises(OSError) as e:  # an OSError (not soundfile's assertion), nothing left
        save_wav(out, tone(16000, 1.0), 16000)
    assert e.value.errno == errno.ENOSPC
    assert sorted(os.listdir(tmp_path)) == ["out.wav"] and out.read_bytes() == old


def test_int16_conversion_round_trip():
    q = np.array([-32768, -1, 0, 1, 32767], dtype=np.int16)
    assert np.array_equal(to_int16(from_int16(q)), q)
    assert to_int16(np.array([1.5, -1.5])).tolist() == [32767, -32768]  # clipped


def test_audio_error_pickles():
    import pickle

    e = pickle.loads(pickle.dumps(AudioError("x.wav", "bad")))
    assert (e.path, e.reason, str(e)) == ("x.wav", "bad", "x.wav: bad")
