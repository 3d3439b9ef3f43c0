"""Data commands never damage good outputs and refuse bad inputs with one clear line.

- a failed or interrupted preprocess/normalize rerun leaves the old dump byte-identical, a
  failed compute-stats the old stats.npz;
- a bad stats.npz (not a zip, keys missing, wrong shapes, a scale <= 0) is one error line
  naming it, and a non-zero exit, in every command that reads one;
- validate-data-dir reads every recording's header (and runs pipes with --run-pipes);
- training refuses pipes in a dump's wav.scp; NaN features are refused by compute-stats and
  normalize; truncated WAV files are refused.
"""

from __future__ import annotations

import errno
import importlib
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from data_fixtures import make_good_data_dir, make_tone_dumps, tone, write_wav
from vocoflow.audio import MelConfig, Stats, get_preset, preprocess, write_data_dir
from vocoflow.audio.datadir import validate_data_dir
from vocoflow.audio.io import AudioError, load_audio
from vocoflow.audio.kaldi_io import ArkScpWriter, read_feats, read_scp

cli_main = importlib.import_module("vocoflow.cli.main")
CFG = get_preset("asterisk16k")
CONFIGS = Path(__file__).resolve().parent.parent / "configs"


@pytest.fixture(autouse=True)
def _all_commands(monkeypatch):
    if "vocoflow.cli.decode" not in cli_main.COMMAND_MODULES:
        monkeypatch.setattr(cli_main, "COMMAND_MODULES", cli_main.COMMAND_MODULES + ["vocoflow.cli.decode"])


def cli(*argv):
    return cli_main.main([str(a) for a in argv])


def snapshot(root) -> dict:
    """``{relative path: bytes}`` of every file under ``root`` (directories as ``None``)."""
    root = Path(root)
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(err) == 1, err
    return err[0]


@pytest.fixture(scope="module")
def dumps(tmp_path_factory):
    """``{"train", "dev"}`` normalised dumps (``raw/<set>`` beside them, ``raw/train/stats.npz``)."""
    return make_tone_dumps(tmp_path_factory.mktemp("dumps"), (("train", 3), ("dev", 2)))


def copy_dump(src, dst) -> Path:
    shutil.copytree(src, dst)
    return Path(dst)


def all_bad_data_dir(root) -> str:
    wav = {"x": write_wav(f"{root}/x.wav", np.zeros(4000)), "y": f"{root}/missing.wav", "z": "false |"}
    write_data_dir(f"{root}/data", wav, {k: "s" for k in wav})
    return f"{root}/data"


# ------------------------------------------------------------------ item 3: failed reruns


def test_failed_rerun_leaves_the_old_dump_byte_identical(tmp_path, capsys):
    good = make_good_data_dir(tmp_path / "good", n=2)
    dump = tmp_path / "dump"
    assert cli("preprocess", "--data-dir", good, "--dump-dir", dump, "--feature-preset", "asterisk16k",
               "--no-progress") == 0
    before = snapshot(dump)
    assert {"feats.scp", "wav.scp", "utt2num_frames", "feats_config.yaml", ".done"} <= set(before)
    bad = all_bad_data_dir(tmp_path / "bad")
    capsys.readouterr()
    assert cli("preprocess", "--data-dir", bad, "--dump-dir", dump, "--feature-preset", "asterisk16k",
               "--no-progress") == 1
    assert "no usable utterance; nothing written" in capsys.readouterr().err
    assert snapshot(dump) == before
    # a fresh dump directory is not even created
    assert cli("preprocess", "--data-dir", bad, "--dump-dir", tmp_path / "new", "--feature-preset",
               "asterisk16k", "--no-progress") == 1
    assert not (tmp_path / "new").exists()


def test_write_error_during_rerun_leaves_the_old_dump(tmp_path, monkeypatch, capsys):
    data = make_good_data_dir(tmp_path, n=2)
    dump = tmp_path / "dump"
    preprocess(data, dump, CFG)
    before = snapshot(dump)

    def full_disk(self, path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(MelConfig, "save", full_disk)  # written after both arks
    assert cli("preprocess", "--data-dir", data, "--dump-dir", dump, "--feature-preset", "asterisk16k",
               "--no-progress") == 1
    line = error_line(capsys)
    assert "No space left on device" in line and f"nothing in {dump} was replaced" in line
    assert snapshot(dump) == before


def test_successful_rerun_replaces_stale_files_and_keeps_other_files(tmp_path):
    from vocoflow.audio.pitch import PitchConfig

    data = make_good_data_dir(tmp_path, n=2)
    dump = tmp_path / "dump"
    preprocess(data, dump, CFG, pitch=PitchConfig())
    assert (dump / "f0.scp").is_file() and (dump / "data/f0.ark").is_file()
    (dump / "log").mkdir()
    (dump / "log/preprocess.log").write_text("the recipe's log of this run\n")
    preprocess(data, dump, CFG)
    names = set(snapshot(dump))
    assert not names & {"f0.scp", "pitch_config.yaml", "data/f0.ark"}
    assert (dump / "log/preprocess.log").read_text() == "the recipe's log of this run\n"
    assert not [n for n in names if ".tmp." in n]
    # the scp lines name the final arks (not the staging directory) and are readable
    for value in read_scp(dump / "feats.scp").values():
        assert value.startswith(f"{dump}/data/feats.ark:")
    assert len(dict(read_feats(dump / "feats.scp"))) == 2


def test_failed_normalize_leaves_the_old_output_byte_identical(tmp_path, dumps, capsys):
    raw = dumps["train"].parent.parent / "raw"
    src = copy_dump(raw / "dev", tmp_path / "raw")
    out = copy_dump(dumps["dev"], tmp_path / "norm")
    before = snapshot(out)
    put_nan(src, "dev1")
    assert cli("normalize", "--dump-dir", src, "--stats", raw / "train/stats.npz", "--out-dir", out,
               "--no-progress") == 1
    line = error_line(capsys)
    assert f"{src}/feats.scp: utterance dev1: features contain NaN or infinite values" in line
    assert snapshot(out) == before


def put_nan(dump, utt):
    """Rewrite ``dump``'s features with one NaN in utterance ``utt``."""
    feats = {k: v.copy() for k, v in read_feats(dump / "feats.scp")}
    feats[utt][1, 2] = np.nan
    with ArkScpWriter(dump / "data/feats.ark", dump / "feats.scp") as w:
        for k, v in feats.items():
            w.write(k, v)


def test_compute_stats_refuses_nan_features_and_keeps_old_stats(tmp_path, dumps, capsys):
    raw = copy_dump(dumps["train"].parent.parent / "raw" / "train", tmp_path / "raw")
    before = (raw / "stats.npz").read_bytes()
    put_nan(raw, "train2")
    assert cli("compute-stats", "--dump-dir", raw, "--no-progress") == 1
    line = error_line(capsys)
    assert f"{raw}/feats.scp: utterance train2: features contain NaN or infinite values (1 of" in line
    assert (raw / "stats.npz").read_bytes() == before
    with pytest.raises(ValueError, match="NaN or infinite"):
        Stats.from_features([np.array([[0.0, np.nan]])])


# ------------------------------------------------------------------ item 6: bad stats.npz files


def write_bad_stats(path, kind):
    if kind == "not-a-zip":
        Path(path).write_bytes(b"this is not a zip archive\n" * 4)
    elif kind == "no-scale":
        np.savez(path, mean=np.zeros(80))
    elif kind == "shapes":
        np.savez(path, mean=np.zeros(80), scale=np.ones(40))
    elif kind == "zero-scale":
        scale = np.ones(80)
        scale[3] = 0.0
        np.savez(path, mean=np.zeros(80), scale=scale)
    elif kind == "negative-scale":
        np.savez(path, mean=np.zeros(80), scale=-np.ones(80))


STATS_PROBLEMS = {
    "not-a-zip": "cannot read statistics",
    "no-scale": "missing scale",
    "shapes": "shapes (80,) and (40,)",
    "zero-scale": "bin 3 is 0, not positive",
    "negative-scale": "bin 0 is -1, not positive",
}


@pytest.mark.parametrize("kind", sorted(STATS_PROBLEMS))
def test_bad_stats_file_is_one_line_naming_it_in_every_command(tmp_path, dumps, capsys, kind):
    problem = STATS_PROBLEMS[kind]
    raw = dumps["train"].parent.parent / "raw"
    bad = tmp_path / "stats.npz"
    write_bad_stats(bad, kind)
    # normalize --stats
    assert cli("normalize", "--dump-dir", raw / "dev", "--stats", bad, "--out-dir", tmp_path / "n",
               "--no-progress") == 1
    line = error_line(capsys)
    assert str(bad) in line and problem in line
    assert not (tmp_path / "n").exists()
    # train: the dump's norm_stats.npz, read by the dataset
    train = copy_dump(dumps["train"], tmp_path / "train")
    write_bad_stats(train / "norm_stats.npz", kind)
    assert cli("train", "--config", CONFIGS / "waveglow_debug.yaml", "--train-dump", train,
               "--out-dir", tmp_path / "exp", "--cpu", "--no-progress", "--steps", "1") == 1
    line = error_line(capsys)
    assert str(train / "norm_stats.npz") in line and problem in line
    # decode: the vocoder directory's stats.npz
    voc = vocoder_dir(tmp_path / "voc")
    write_bad_stats(voc / "stats.npz", kind)
    feats = dumps["dev"] / "feats.scp"
    assert cli("decode", "--model", voc, "--feats-scp", feats, "--out-dir", tmp_path / "dec", "--no-progress") == 1
    line = error_line(capsys)
    assert str(voc / "stats.npz") in line and problem in line


def vocoder_dir(path) -> Path:
    import torch

    from vocoflow.vocoders import build_model, load_config, save_vocoder

    cfg = load_config(CONFIGS / "waveglow_debug.yaml")
    torch.manual_seed(0)
    stats = {"mean": np.full(80, -6.0), "scale": np.full(80, 2.0)}
    return Path(save_vocoder(build_model(cfg), cfg, path, stats=stats))


@pytest.mark.parametrize("scale", [0.0, -2.0])
def test_nonpositive_scale_is_refused(scale):
    with pytest.raises(ValueError, match="the scale of bin 1 is .*, not positive"):
        Stats(np.zeros(3), np.array([1.0, scale, 1.0]), 5)


# ------------------------------------------------------------------ item 7: quieter gaps


def test_validate_checks_pipes_and_audio_without_segments(tmp_path, capsys):
    data = make_good_data_dir(tmp_path, n=2)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF....WAVEfmt garbage" * 10)
    wav = {"u0": str(corrupt), "u1": "false |"}
    write_data_dir(data, wav, {k: "spk1" for k in wav})
    assert not os.path.exists(f"{data}/segments")
    codes = [(i.line, i.code) for i in validate_data_dir(data, run_pipes=True) if i.severity == "error"]
    assert codes == [(1, "unreadable-audio"), (2, "unreadable-audio")]
    assert cli("validate-data-dir", "--run-pipes", data) == 1
    out = capsys.readouterr()
    assert f"{data}/wav.scp:1: error: cannot read audio of 'u0'" in out.out
    assert f"{data}/wav.scp:2: error: cannot read audio of 'u1'" in out.out and "status 1" in out.out
    assert "OK" not in out.out
    # without --run-pipes the file is still checked; the pipe is not run
    assert [i.line for i in validate_data_dir(data) if i.severity == "error"] == [1]


def test_train_refuses_pipes_in_a_dump_wav_scp(tmp_path, dumps, capsys):
    from vocoflow.audio import AudioMelDataset

    train = copy_dump(dumps["train"], tmp_path / "train")
    marker = tmp_path / "ran"
    lines = (train / "wav.scp").read_text().splitlines()
    lines[1] = f"train1 touch {marker} |"
    (train / "wav.scp").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"wav\.scp:2: utterance train1: a pipe .*ark entries"):
        AudioMelDataset(train, 2048)
    assert cli("train", "--config", CONFIGS / "waveglow_debug.yaml", "--train-dump", train,
               "--out-dir", tmp_path / "exp", "--cpu", "--no-progress", "--steps", "1") == 1
    line = error_line(capsys)
    assert f"{train}/wav.scp:2: utterance train1: a pipe" in line
    assert not marker.exists()
    # a plain file is no dump entry either
    lines[1] = f"train1 {write_wav(tmp_path / 'a.wav', tone(16000, 0.5))}"
    (train / "wav.scp").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"wav\.scp:2: utterance train1: a plain file"):
        AudioMelDataset(train, 2048)


def truncated_and_streamed(tmp_path):
    full = write_wav(tmp_path / "full.wav", tone(16000, 1.0))
    data = Path(full).read_bytes()
    trunc = tmp_path / "trunc.wav"
    trunc.write_bytes(data[: len(data) // 2])
    stream = bytearray(data)  # as a pipe writes it: unknown lengths
    at = stream.find(b"data")
    stream[4:8] = stream[at + 4 : at + 8] = struct.pack("<I", 0xFFFFFFFF)
    (tmp_path / "stream.wav").write_bytes(bytes(stream))
    return str(trunc), str(tmp_path / "stream.wav")


def test_truncated_wav_is_refused(tmp_path):
    trunc, stream = truncated_and_streamed(tmp_path)
    assert sf.info(trunc).frames == 7989  # what libsndfile would silently read
    with pytest.raises(AudioError, match=r"trunc\.wav: truncated WAV file: the header declares 32000 bytes "
                                         r"of audio data, the file holds 15978"):
        load_audio(trunc)
    wav, rate = load_audio(stream)  # a streamed header's placeholder length is no claim
    assert (len(wav), rate) == (16000, 16000)
    # preprocess lists it as a bad utterance; validate-data-dir reports it
    data = tmp_path / "data"
    write_data_dir(data, {"a": stream, "b": trunc}, {"a": "s", "b": "s"})
    res = preprocess(data, tmp_path / "dump", CFG)
    assert res.n_ok == 1 and res.bad[0][0] == "b" and "truncated WAV file" in res.bad[0][1]
    issues = [str(i) for i in validate_data_dir(data) if i.severity == "error"]
    assert len(issues) == 1 and "wav.scp:2" in issues[0] and "truncated WAV file" in issues[0]


def test_normalize_flag_must_be_a_real_boolean(tmp_path, capsys):
    import yaml

    from vocoflow.vocoders import VocoderError, build_model, load, load_config, save_vocoder

    cfg = load_config(CONFIGS / "waveglow_debug.yaml")
    stats = {"mean": np.full(80, -6.0), "scale": np.full(80, 2.0)}
    with pytest.raises(VocoderError, match=r"normalize must be true or false .*got 'false'"):
        save_vocoder(build_model(cfg), {**cfg, "normalize": "false"}, tmp_path / "v0", stats=stats)
    assert not (tmp_path / "v0").exists()
    voc = vocoder_dir(tmp_path / "voc")
    doc = yaml.safe_load((voc / "config.yaml").read_text())
    assert doc["normalize"] is True and load(voc).normalize
    doc["normalize"] = "false"  # a quoted string: it used to be read as true
    (voc / "config.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(VocoderError, match=r"config\.yaml: normalize must be true or false"):
        load(voc)
    feats = tmp_path / "f.scp"
    with ArkScpWriter(tmp_path / "f.ark", feats) as w:
        w.write("a", np.full((10, 80), -6.0, np.float32))
    assert cli("decode", "--model", voc, "--feats-scp", feats, "--out-dir", tmp_path / "dec", "--no-progress") == 1
    assert f"{voc}/config.yaml: normalize must be true or false" in error_line(capsys)
    doc["normalize"] = False  # a real boolean is accepted
    (voc / "config.yaml").write_text(yaml.safe_dump(doc))
    assert load(voc).normalize is False


def test_api_refuses_nonpositive_scale():
    from vocoflow.vocoders import Vocoder, VocoderError, build_model, load_config

    cfg = load_config(CONFIGS / "waveglow_debug.yaml")
    model = build_model(cfg)
    features = get_preset("asterisk16k")
    with pytest.raises(VocoderError, match="the scale of bin 0 is -2, not positive"):
        Vocoder(model, features, stats=(np.zeros(80), np.full(80, -2.0)), normalize=True)
