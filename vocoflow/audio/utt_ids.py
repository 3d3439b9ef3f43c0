"""Utterance ids that become file names (``OUT/<utt>.wav``, ``spectrogram_<utt>.png``).

An id from a ``feats.scp``/``wav.scp`` (or a file name in an input directory) is used as a file
name only when it is a *plain* file name, so that nothing is ever written outside the output
directory. An id may hold any characters except:

- a path separator (``/`` or ``\\``), so ``../victim`` or ``/etc/passwd`` is refused;
- whitespace (Kaldi ids cannot hold it, and ``bad_utts`` lines are ``<id> <reason>``);
- control characters (NUL, newline, ...);
- a leading ``.`` (``.``, ``..``, hidden files and vocoflow's ``.<name>.tmp.*`` files);

and it must be 1 to :data:`MAX_ID_BYTES` bytes long in UTF-8 (room for a suffix and the
temporary name within the usual 255-byte file name limit).

>>> id_problem("spk1_utt-002")
>>> id_problem("../victim")
"contains a path separator '/'"
>>> id_problem("")
'is empty'
"""

from __future__ import annotations

import unicodedata

__all__ = ["MAX_ID_BYTES", "id_problem", "is_plain_id"]

MAX_ID_BYTES = 200


def id_problem(utt_id: str) -> str | None:
    """Why ``utt_id`` cannot be used as a file name, or ``None`` when it can."""
    if not utt_id:
        return "is empty"
    for sep in ("/", "\\"):
        if sep in utt_id:
            return f"contains a path separator {sep!r}"
    for c in utt_id:
        if c.isspace():
            return f"contains whitespace {c!r}"
        if unicodedata.category(c) == "Cc":
            return f"contains a control character {c!r}"
    if utt_id.startswith("."):
        return "starts with '.' (hidden and temporary file names are reserved)"
    size = len(utt_id.encode("utf-8", errors="surrogateescape"))
    if size > MAX_ID_BYTES:
        return f"is {size} bytes long (at most {MAX_ID_BYTES})"
    return None


def is_plain_id(utt_id: str) -> bool:
    """Whether ``utt_id`` is a plain file name (see :func:`id_problem`)."""
    return id_problem(utt_id) is None
