"""Hostile and ambiguous inputs of ``vocoflow decode`` / ``evaluate`` and the Vocoder API:
ids that would escape the output directory, mel orientation and file formats, log base and
sample scale, synthesis knobs, and file-system failures (out-dir a file, read-only, full disk)."""

from __future__ import annotations

import builtins
import errno
import importlib
import io
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import vocoflow.atomic as atomic
from flowcheck import randomize
from vocoflow.audio import MelConfig, MelSpectrogram
from vocoflow.audio.io import save_wav, to_int16
from vocoflow.audio.kaldi_io import ArkScpWriter
from vocoflow.audio.utt_ids import id_problem
from vocoflow.vocoders import VocoderError, build_model, load, load_config, noise_for, save_vocoder
from vocoflow.vocoders.api import log_base_mismatch

cli_main = importlib.import_module("vocoflow.cli.main")
CONFIGS = Path(__file__).resolve().parent.parent / "configs"
MEAN, SCALE = -6.0, 2.0
SR, HOP = 16000, 256


def run(*argv):
    return cli_main.main(["decode", "--no-progress", *map(str, argv)])


def _cfg(**features):
    cfg = load_config(CONFIGS / "waveglow_debug.yaml")
    cfg["features"] = {"preset": "asterisk16k", **features}
    return cfg


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    cfg = _cfg()
    torch.manual_seed(0)
    model = randomize(build_model(cfg), std=0.05)
    stats = {"mean": np.full(80, MEAN), "scale": np.full(80, SCALE)}
    return save_vocoder(model, cfg, tmp_path_factory.mktemp("m") / "voc", stats=stats)


@pytest.fixture(scope="module")
def voc(model_dir):
    return load(model_dir)


def raw(frames, seed):
    g = np.random.default_rng(seed)
    return np.maximum(MEAN + SCALE * g.standard_normal((80, frames)), math.log(1e-5)).astype(np.float32)


def signal(silence=4000, seconds=1.0, seed=0):
    """Digital silence, then a tone with a little noise (float in [-1, 1])."""
    t = np.arange(int(seconds * SR)) / SR
    g = np.random.default_rng(seed)
    voiced = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.02 * g.standard_normal(len(t))
    return np.concatenate([np.zeros(silence), voiced]).astype(np.float32)


def features_of(**features):
    return MelConfig.from_dict(_cfg(**features)["features"])


def mel_of(wav, **features):
    return MelSpectrogram(features_of(**features))(torch.from_numpy(wav)).numpy()


def expected_int16(voc, mel, utt, seed=0):
    """What decode must write for ``mel`` (n_mels, frames): the API's synthesis with the
    utterance's noise, as 16-bit PCM."""
    noise = noise_for(utt, seed, (mel.shape[-1] * HOP,))
    return to_int16(voc.synthesize(torch.from_numpy(np.ascontiguousarray(mel)), noise=noise).numpy())


def bad_utts(out):
    return dict(line.split(" ", 1) for line in (out / "bad_utts").read_text().splitlines())


def no_temporaries(directory):
    return not [p for p in Path(directory).iterdir() if p.name.startswith(".")]


# --------------------------------------------------------------------------------- utterance ids
def test_id_rule():
    for good in ("u1", "spk-1_utt.002", "ü", "a..b", "-x", "bad_utts"):
        assert id_problem(good) is None, good
    for bad in ("", ".", "..", "../victim", "/abs/path", "a/b", "a\\b", ".hidden", "a b",
                "a\tb", "a\x00b", "x" * 201):
        assert id_problem(bad), bad


@pytest.mark.parametrize("kind", ["relative", "absolute", "dotdot"])
def test_feats_scp_id_cannot_escape_out_dir(tmp_path, model_dir, capsys, kind):
    victim = tmp_path / "victim.wav"
    victim.write_bytes(b"precious")
    out = tmp_path / "work" / "out"
    bad_id = {"relative": "../../victim", "absolute": str(tmp_path / "victim"), "dotdot": ".."}[kind]
    d = tmp_path / "dump"
    d.mkdir()
    with ArkScpWriter(d / "feats.ark", d / "good.scp") as w:
        w.write("ok", raw(5, 1).T)
    entry = (d / "good.scp").read_text().split(" ", 1)[1]
    (d / "feats.scp").write_text(f"ok {entry}{bad_id} {entry}")
    assert run("--model", model_dir, "--out-dir", out, "--feats-scp", d / "feats.scp") == 1
    err = capsys.readouterr().err
    assert f"{d / 'feats.scp'}:2: utterance id {bad_id!r}" in err and "plain file name" in err
    assert victim.read_bytes() == b"precious"
    assert not out.exists()  # refused before anything was written
    assert not list(tmp_path.rglob("*.wav.tmp*")) and sorted(p.name for p in tmp_path.glob("*.wav")) == ["victim.wav"]


def test_wav_scp_absolute_id_refused(tmp_path, model_dir, capsys):
    wav = tmp_path / "x.wav"
    save_wav(wav, signal(0, 0.3), SR)
    target = tmp_path / "elsewhere" / "owned"
    target.parent.mkdir()
    (tmp_path / "wav.scp").write_text(f"{target} {wav}\n")
    assert run("--model", model_dir, "--out-dir", tmp_path / "out", "--wav-scp", tmp_path / "wav.scp") == 1
    assert f"wav.scp:1: utterance id '{target}' contains a path separator" in capsys.readouterr().err
    assert list(target.parent.iterdir()) == []


def test_input_dirs_skip_hidden_files_and_refuse_bad_names(tmp_path, model_dir, capsys):
    src = tmp_path / "npy"
    src.mkdir()
    np.save(src / "a.npy", raw(5, 1))
    np.save(src / "._a.npy", raw(5, 2))  # e.g. a macOS resource fork: skipped
    out = tmp_path / "out"
    assert run("--model", model_dir, "--out-dir", out, "--npy-dir", src) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.wav"]
    np.save(src / "a b.npy", raw(5, 3))
    assert run("--model", model_dir, "--out-dir", tmp_path / "o2", "--npy-dir", src) == 1
    assert f"{src / 'a b.npy'}: utterance id 'a b'" in capsys.readouterr().err
    os.unlink(src / "a b.npy")
    torch.save(torch.from_numpy(raw(5, 4)), src / "a.pt")
    assert run("--model", model_dir, "--out-dir", tmp_path / "o3", "--npy-dir", src) == 1
    assert "two files for utterance 'a': a.npy and a.pt" in capsys.readouterr().err


def test_evaluate_refuses_escaping_ids(tmp_path, capsys):
    wav = tmp_path / "r.wav"
    save_wav(wav, signal(0, 0.5), SR)
    (tmp_path / "wav.scp").write_text(f"ok {wav}\n../../escape {wav}\n")
    out = tmp_path / "eval"
    rc = cli_main.main(["evaluate", "--ref", str(tmp_path / "wav.scp"), "--out-dir", str(out),
                        "--griffin-lim", "--feature-preset", "asterisk16k", "--metrics", "lmd"])
    assert rc == 1
    assert f"{tmp_path / 'wav.scp'}:2: utterance id '../../escape'" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "escape.wav").exists()


# ----------------------------------------------------------------------- orientation and formats
def test_square_npy_refused_unless_layout_given(tmp_path, model_dir, voc, capsys):
    src = tmp_path / "npy"
    src.mkdir()
    sq = raw(80, 5)  # (n_mels, frames) with frames == n_mels
    np.save(src / "sq.npy", sq)
    out = tmp_path / "out"
    assert run("--model", model_dir, "--out-dir", out, "--npy-dir", src) == 1
    assert "orientation is ambiguous" in bad_utts(out)["sq"] and not (out / "sq.wav").exists()
    capsys.readouterr()
    for layout, mel in (("mels-frames", sq), ("frames-mels", sq.T)):
        o = tmp_path / layout
        assert run("--model", model_dir, "--out-dir", o, "--npy-dir", src, "--mel-layout", layout) == 0
        got, _ = sf.read(o / "sq.wav", dtype="int16")
        assert np.abs(got.astype(int) - expected_int16(voc, mel, "sq")).max() <= 1


def test_npy_batch_axis_and_pt_files(tmp_path, model_dir, voc):
    src = tmp_path / "mels"
    src.mkdir()
    a, b, c = raw(7, 1), raw(6, 2), raw(9, 3)
    np.save(src / "a.npy", a[None])                          # (1, n_mels, T)
    torch.save(torch.from_numpy(b), src / "b.pt")            # NVIDIA-style tensor file
    torch.save(torch.from_numpy(c)[None].half(), src / "c.pt")  # (1, n_mels, T), float16
    out = tmp_path / "out"
    assert run("--model", model_dir, "--out-dir", out, "--mel-dir", src) == 0
    for u, mel in (("a", a), ("b", b), ("c", torch.from_numpy(c).half().float().numpy())):
        got, _ = sf.read(out / f"{u}.wav", dtype="int16")
        assert np.abs(got.astype(int) - expected_int16(voc, mel, u)).max() <= 1, u


class _Payload:
    """Unpickling this would create a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_pt_files_that_are_not_one_tensor_are_refused(tmp_path, model_dir):
    src = tmp_path / "mels"
    src.mkdir()
    marker = tmp_path / "code_ran"
    torch.save({"mel": torch.from_numpy(raw(5, 1))}, src / "dict.pt")
    torch.save(_Payload(str(marker)), src / "evil.pt")
    (src / "junk.pt").write_bytes(b"not a torch file")
    torch.save(torch.from_numpy(raw(5, 2)), src / "ok.pt")
    out = tmp_path / "out"
    assert run("--model", model_dir, "--out-dir", out, "--npy-dir", src) == 2
    bad = bad_utts(out)
    assert set(bad) == {"dict", "evil", "junk"}
    assert f"{src / 'dict.pt'}: holds a dict, not a tensor" in bad["dict"]
    assert str(src / "evil.pt") in bad["evil"] and str(src / "junk.pt") in bad["junk"]
    assert not marker.exists()  # nothing from the file was executed
    assert (out / "ok.wav").exists()


def test_feats_scp_npy_entries_follow_the_npy_convention(tmp_path, model_dir, voc):
    sq = raw(80, 6)
    np.save(tmp_path / "sq.npy", sq)
    (tmp_path / "feats.scp").write_text(f"sq {tmp_path / 'sq.npy'}\n")
    out = tmp_path / "out"
    assert run("--model", model_dir, "--out-dir", out, "--feats-scp", tmp_path / "feats.scp") == 1
    assert "ambiguous" in bad_utts(out)["sq"]
    assert run("--model", model_dir, "--out-dir", out, "--feats-scp", tmp_path / "feats.scp",
               "--mel-layout", "mels-frames") == 0
    got, _ = sf.read(out / "sq.wav", dtype="int16")
    assert np.abs(got.astype(int) - expected_int16(voc, sq, "sq")).max() <= 1


# ------------------------------------------------------------------------- log base and scale
def test_log10_mel_given_to_ln_model_is_named(tmp_path, voc, model_dir, capsys):
    wav = signal()
    ln, log10 = mel_of(wav, log="ln"), mel_of(wav, log="log10")
    # an independent check of what a log10 mel is: the ln mel over ln(10), the same floor clamp
    np.testing.assert_allclose(log10, ln / math.log(10), atol=1e-4)
    voc.synthesize(torch.from_numpy(ln))  # the right base passes
    with pytest.raises(VocoderError) as e:
        voc.synthesize(torch.from_numpy(log10))
    msg = str(e.value)
    assert "log base mismatch" in msg and "looks like a log10 mel" in msg
    assert "log10(1e-05)" in msg and "expects natural-log (ln) mels" in msg
    assert "normalized=True" not in msg and "--no-normalize" not in msg
    src = tmp_path / "npy"
    src.mkdir()
    np.save(src / "x.npy", log10)
    assert run("--model", model_dir, "--out-dir", tmp_path / "out", "--npy-dir", src) == 1
    reason = bad_utts(tmp_path / "out")["x"]
    assert "looks like a log10 mel" in reason and "--no-normalize" not in reason


def test_ln_mel_given_to_log10_model_is_named(tmp_path):
    cfg = _cfg(log="log10")
    d = save_vocoder(build_model(cfg), cfg, tmp_path / "v10")
    v10 = load(d)
    assert v10.features.log == "log10" and v10.stats_mean is None
    wav = signal()
    v10.synthesize(torch.from_numpy(mel_of(wav, log="log10")))
    with pytest.raises(VocoderError, match=r"looks like a natural-log \(ln\) mel .* expects log10 mels"):
        v10.synthesize(torch.from_numpy(mel_of(wav, log="ln")))
    # without silence (no floor to recognise): values below the log10 floor that fit in ln
    with pytest.raises(VocoderError, match="below the log10 floor"):
        v10.synthesize(torch.from_numpy(mel_of(signal(0), log="ln") - 4.0))


def test_log_base_from_statistics_without_silence():
    """No digital silence: the training statistics decide (and the right base is not flagged)."""
    features = features_of()
    train = mel_of(signal(0, 2.0, seed=1))
    mean, scale = train.mean(axis=1), train.std(axis=1) + 0.1
    test = mel_of(signal(0, 1.0, seed=2))
    assert log_base_mismatch(test, features, mean, scale)[0] is None
    other, reason = log_base_mismatch(test / math.log(10), features, mean, scale)
    assert other == "log10" and "read as log10" in reason


def test_mel_refuses_int16_and_int16_scaled_samples(voc):
    wav = signal(0, 0.5)
    pcm = to_int16(wav)
    with pytest.raises(VocoderError, match=r"integer dtype int16 \(peak \d+\); expected float samples "
                                           r"in \[-1, 1\] \(divide int16 PCM by 32768\)"):
        voc.mel(pcm)
    with pytest.raises(VocoderError, match="looks like int16-scaled audio"):
        voc.mel(pcm.astype(np.float32))
    with pytest.raises(VocoderError, match="NaN or infinite"):
        voc.mel(np.full(2048, np.nan, np.float32))
    ok = voc.mel(wav)
    torch.testing.assert_close(ok, MelSpectrogram(voc.features)(torch.from_numpy(wav)))


def test_sigma_and_denoise_must_be_finite(voc, tmp_path, model_dir, capsys):
    mel = torch.from_numpy(raw(5, 1))
    for bad in (math.nan, math.inf, -0.1):
        with pytest.raises(VocoderError, match="sigma must be finite and >= 0"):
            voc.synthesize(mel, sigma=bad)
        with pytest.raises(VocoderError, match="denoise must be finite and >= 0"):
            voc.synthesize_batch([mel], denoise=bad)
    with pytest.raises(VocoderError, match="sigma must be"):
        voc.synthesize_batch([mel], sigma=math.nan)
    assert torch.isfinite(voc.synthesize(mel, sigma=0.0)).all()
    src = tmp_path / "npy"
    src.mkdir()
    np.save(src / "a.npy", raw(5, 1))
    assert run("--model", model_dir, "--out-dir", tmp_path / "out", "--npy-dir", src, "--sigma", "nan") == 1
    assert "--sigma must be finite and >= 0, got nan" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_empty_batch(voc):
    wav = voc.synthesize(torch.zeros(0, 80, 5))
    assert tuple(wav.shape) == (0, 5 * HOP)
    assert voc.synthesize_batch([]) == []


# ---------------------------------------------------------------------------- the file system
def _npy_dir(tmp_path, lengths):
    src = tmp_path / "npy"
    src.mkdir()
    for i, (u, frames) in enumerate(lengths.items()):
        np.save(src / f"{u}.npy", raw(frames, i))
    return src


def test_out_dir_that_is_a_file(tmp_path, model_dir, capsys):
    src = _npy_dir(tmp_path, {"a": 5})
    out = tmp_path / "out"
    out.write_text("keep")
    assert run("--model", model_dir, "--out-dir", out, "--npy-dir", src) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"vocoflow decode: error: {out}: --out-dir exists and is not a directory"]
    assert out.read_text() == "keep"


def _writes_blocked(directory) -> bool:
    try:
        fd, p = tempfile.mkstemp(dir=directory)
    except OSError:
        return True
    os.close(fd)
    os.unlink(p)
    return False


def test_read_only_out_dir(tmp_path, model_dir, capsys, monkeypatch):
    src = _npy_dir(tmp_path, {"a": 5, "b": 6})
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o555)
    try:
        if not _writes_blocked(out):  # root: the mode does not stop writes; refuse them here
            real = tempfile.mkstemp

            def mkstemp(*args, **kw):
                if os.path.abspath(kw.get("dir") or ".") == str(out):
                    raise PermissionError(errno.EACCES, "Permission denied")
                return real(*args, **kw)

            monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
        assert run("--model", model_dir, "--out-dir", out, "--npy-dir", src) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"vocoflow decode: error: {out}: cannot write to the output directory "
                       f"(Permission denied)"]
    finally:
        out.chmod(0o755)
    assert list(out.iterdir()) == []


class _FullRaw(io.FileIO):
    """A file on a full disk: every write fails with ENOSPC."""

    def write(self, b):
        raise OSError(errno.ENOSPC, "No space left on device")


def _full_disk(monkeypatch, full):
    """Make writes of the atomic temporary files of the names in ``full`` (or of all files,
    ``full=None``) fail as on a full disk."""
    def fake_open(path, mode="r", encoding=None, **kw):
        base = os.path.basename(path)
        if "w" in mode and (full is None or any(base.startswith(f".{n}.tmp.") for n in full)):
            buffered = io.BufferedWriter(_FullRaw(path, "w"))
            return buffered if "b" in mode else io.TextIOWrapper(buffered, encoding=encoding)
        return builtins.open(path, mode, encoding=encoding, **kw)

    monkeypatch.setattr(atomic, "open", fake_open, raising=False)


def test_full_disk_for_one_utterance(tmp_path, model_dir, voc, capsys, monkeypatch):
    # b is long enough (> 8 KiB of PCM) that the failing write happens while it is encoded
    src = _npy_dir(tmp_path, {"a": 5, "b": 40, "c": 6})
    out = tmp_path / "out"
    out.mkdir()
    (out / "b.wav").write_bytes(b"an older complete file")
    _full_disk(monkeypatch, ["b.wav"])
    assert run("--model", model_dir, "--out-dir", out, "--npy-dir", src) == 2
    err = capsys.readouterr().err
    assert "1 of 3 utterance(s) failed" in err
    assert bad_utts(out) == {"b": f"cannot write {out / 'b.wav'}: No space left on device"}
    assert (out / "b.wav").read_bytes() == b"an older complete file"  # never half-written
    for u, frames in (("a", 5), ("c", 6)):  # the rest was attempted and written
        got, _ = sf.read(out / f"{u}.wav", dtype="int16")
        assert len(got) == frames * HOP
    assert no_temporaries(out)


def test_full_disk_for_everything(tmp_path, model_dir, capsys, monkeypatch):
    src = _npy_dir(tmp_path, {"a": 5, "b": 6})
    out = tmp_path / "out"
    _full_disk(monkeypatch, None)
    assert run("--model", model_dir, "--out-dir", out, "--npy-dir", src) == 1
    err = capsys.readouterr().err
    assert "2 of 2 utterance(s) failed (bad_utts could not be written)" in err
    assert f"error: {out / 'bad_utts'}: cannot write bad_utts (No space left on device)" in err
    assert f"error: nothing was produced in {out}" in err
    assert list(out.iterdir()) == []


def test_stale_bad_utts_removed_when_a_rerun_succeeds(tmp_path, model_dir):
    src = _npy_dir(tmp_path, {"a": 5})
    np.save(src / "broken.npy", np.zeros((40, 6), np.float32))
    out = tmp_path / "out"
    assert run("--model", model_dir, "--out-dir", out, "--npy-dir", src) == 2
    assert set(bad_utts(out)) == {"broken"}
    os.unlink(src / "broken.npy")
    assert run("--model", model_dir, "--out-dir", out, "--npy-dir", src) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.wav"]
