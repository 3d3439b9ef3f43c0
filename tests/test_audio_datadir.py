"""Kaldi data directory validation: each defect is reported with its file and line."""

import os

import numpy as np
import pytest

from data_fixtures import make_good_data_dir, tone, write_lines, write_wav
from vocoflow.audio import DataDir, DataDirError, load_utterance, validate_data_dir
from vocoflow.cli.main import main as cli


def errors(data):
    return [str(i) for i in validate_data_dir(data) if i.severity == "error"]


def only_error(data, code):
    issues = [i for i in validate_data_dir(data) if i.severity == "error"]
    assert len(issues) == 1, [str(i) for i in issues]
    assert issues[0].code == code, str(issues[0])
    return str(issues[0])


def rewrite(path, fn):
    with open(path) as f:
        lines = f.read().splitlines()
    write_lines(path, fn(lines))


def test_good_dir_has_no_issue(good_data_dir):
    assert validate_data_dir(good_data_dir) == []
    dd = DataDir(good_data_dir).check()
    utts = dd.utterances()
    assert [u.utt_id for u in utts] == ["u0", "u1", "u2", "u3"]
    assert utts[0].speaker == "spk1" and utts[0].text == "utterance 0"


def test_duplicate_ids(good_data_dir):
    wav = os.path.join(good_data_dir, "wav.scp")
    rewrite(wav, lambda ls: ls[:2] + [ls[1]] + ls[2:])
    msg = only_error(good_data_dir, "duplicate")
    assert msg.startswith(f"{wav}:3: error: duplicate id 'u1' (first on line 2)")


def test_unsorted_ids(good_data_dir):
    u2s = os.path.join(good_data_dir, "utt2spk")
    rewrite(u2s, lambda ls: [ls[0], ls[2], ls[1], ls[3]])
    msg = only_error(good_data_dir, "unsorted")
    assert msg.startswith(f"{u2s}:3: error: ids not sorted: 'u1' comes after 'u2'")


def test_missing_audio(good_data_dir):
    wav = os.path.join(good_data_dir, "wav.scp")
    rewrite(wav, lambda ls: ls[:2] + ["u2 /nonexistent/u2.wav"] + ls[3:])
    msg = only_error(good_data_dir, "missing-audio")
    assert msg.startswith(f"{wav}:3: error: missing audio: file '/nonexistent/u2.wav'")


def test_malformed_lines(good_data_dir):
    wav = os.path.join(good_data_dir, "wav.scp")
    u2s = os.path.join(good_data_dir, "utt2spk")
    rewrite(wav, lambda ls: ls[:3] + ["u3"])
    rewrite(u2s, lambda ls: ls[:1] + ["u1 spk1 extra"] + ls[2:])
    errs = errors(good_data_dir)
    assert any(e.startswith(f"{wav}:4: error: malformed line") for e in errs), errs
    assert any(e.startswith(f"{u2s}:2: error: malformed line") for e in errs), errs


def test_segments_past_end_and_malformed(tmp_path):
    rec = write_wav(tmp_path / "rec.wav", tone(16000, 2.0), 16000)
    write_lines(tmp_path / "d/wav.scp", [f"rec {rec}"])
    write_lines(tmp_path / "d/segments", [
        "a rec 0.00 1.00",
        "b rec 1.00 2.40",   # 0.4 s past the end: within Kaldi's 0.5 s tolerance
        "c rec 1.50 3.50",   # past the end
        "d rec 1.0 x",       # malformed
        "e rec 2.50 -1",     # starts after the end
    ])
    write_lines(tmp_path / "d/utt2spk", ["a s", "b s", "c s", "d s", "e s"])
    seg = str(tmp_path / "d/segments")
    errs = errors(tmp_path / "d")
    msg = f"{seg}:3: error: segment 'c' ends at 3.500 s, past the end of recording 'rec' (2.000 s)"
    assert any(e.startswith(msg) for e in errs), errs
    assert any(e.startswith(f"{seg}:4: error: malformed line") for e in errs), errs
    assert any(e.startswith(f"{seg}:5: error: segment 'e' starts at 2.500 s") for e in errs), errs
    assert not any(f"{seg}:2:" in e or f"{seg}:1:" in e for e in errs), errs
    # reading: segment b is truncated to the file
    dd = DataDir(tmp_path / "d", check_audio=False)
    b = [u for u in dd.utterances() if u.utt_id == "b"][0]
    wav, _ = load_utterance(b, 16000)
    assert len(wav) == 16000


def test_segments_unknown_recording(tmp_path):
    rec = write_wav(tmp_path / "rec.wav", tone(16000, 1.0), 16000)
    write_lines(tmp_path / "d/wav.scp", [f"rec {rec}"])
    write_lines(tmp_path / "d/segments", ["a rec 0 0.5", "b zzz 0 0.5"])
    msg = only_error(tmp_path / "d", "unknown-recording")
    assert msg.startswith(f"{tmp_path / 'd/segments'}:2: error: recording 'zzz'")


def test_utt2spk_spk2utt_mismatch(good_data_dir):
    s2u = os.path.join(good_data_dir, "spk2utt")
    write_lines(s2u, ["spk1 u0 u1 u3"])
    msg = only_error(good_data_dir, "spk-mismatch")
    assert msg.startswith(f"{s2u}:1: error: utt2spk/spk2utt mismatch for speaker 'spk1'")
    assert "u2" in msg
    write_lines(s2u, ["spk1 u0 u1 u2 u3", "spk2 u9"])
    msg = only_error(good_data_dir, "spk-mismatch")
    assert msg.startswith(f"{s2u}:2: error: utt2spk/spk2utt mismatch: speaker 'spk2' is not in")


def test_utt2spk_without_audio_and_text_mismatch(good_data_dir):
    u2s = os.path.join(good_data_dir, "utt2spk")
    text = os.path.join(good_data_dir, "text")
    rewrite(u2s, lambda ls: ls + ["u4 spk1"])
    write_lines(os.path.join(good_data_dir, "spk2utt"), ["spk1 u0 u1 u2 u3 u4"])
    rewrite(text, lambda ls: ls + ["u9 hello"])
    errs = errors(good_data_dir)
    assert any(e.startswith(f"{u2s}:5: error: utterance 'u4' has no audio") for e in errs), errs
    assert any(e.startswith(f"{text}:5: error: transcript for unknown utterance 'u9'") for e in errs), errs


def test_pipe_entries_are_read(tmp_path):
    p = write_wav(tmp_path / "a.wav", tone(16000, 0.5), 16000)
    write_lines(tmp_path / "d/wav.scp", [f"a cat {p} |"])
    dd = DataDir(tmp_path / "d").check()
    wav, sr = load_utterance(dd.utterances()[0], 16000)
    assert sr == 16000 and len(wav) == 8000
    assert any(i.code == "no-utt2spk" for i in dd.warnings)


def test_check_raises_with_all_errors(good_data_dir):
    os.remove(os.path.join(os.path.dirname(good_data_dir), "wav", "u1.wav"))
    with pytest.raises(DataDirError, match=r"wav\.scp:2: error: missing audio"):
        DataDir(good_data_dir).check()


def test_cli_validate(good_data_dir, capsys):
    assert cli(["validate-data-dir", good_data_dir]) == 0
    assert "OK: 4 utterance(s), 1 speaker(s)" in capsys.readouterr().out
    rewrite(os.path.join(good_data_dir, "wav.scp"), lambda ls: [ls[1], ls[0]] + ls[2:])
    assert cli(["validate-data-dir", good_data_dir]) == 1
    out = capsys.readouterr()
    assert f"{good_data_dir}/wav.scp:2: error: ids not sorted" in out.out
    assert "1 error(s)" in out.err


def test_load_utterance_reports_file(tmp_path):
    d = make_good_data_dir(tmp_path, n=1)
    write_wav(os.path.join(tmp_path, "wav", "u0.wav"), np.zeros(8000), 16000)
    with pytest.raises(Exception, match=r"u0\.wav: all-silent"):
        load_utterance(DataDir(d).utterances()[0], 16000)
