"""A flat YAML subset: one ``key: scalar`` mapping, written and read without PyYAML.

The ``audio`` layer may not import PyYAML (the layering rule), but feature configurations are
saved as YAML next to every dump and model. They are flat mappings of scalars, so this module
writes them in a form that any YAML 1.1/1.2 reader (PyYAML included) loads to the same dict,
and reads back that form plus the usual hand-written variants (comments, bare strings,
``~``/``null``, ``1e-5`` without a dot). Nested mappings and lists are refused with the line
number.

>>> text = dump_flat({"a": 1, "b": 1e-05, "c": None, "d": "hann", "e": True})
>>> print(text, end="")
a: 1
b: 1.0e-05
c: null
d: "hann"
e: true
>>> load_flat(text) == {"a": 1, "b": 1e-05, "c": None, "d": "hann", "e": True}
True
"""

from __future__ import annotations

import math
import re

__all__ = ["dump_flat", "load_flat"]

_KEY = re.compile(r"^([A-Za-z_][A-Za-z0-9_.\-]*)\s*:(?:\s+(.*?))?\s*$")
_INT = re.compile(r"^[-+]?[0-9]+$")
_FLOAT = re.compile(r"^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$")


def _format(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        text = repr(value)
        mantissa, e, exponent = text.partition("e")
        if e and "." not in mantissa:  # PyYAML reads "1e-05" as a string: write "1.0e-05"
            text = f"{mantissa}.0e{exponent}"
        return text
    if isinstance(value, str):
        return _quote(value)
    raise TypeError(f"only scalars can be written to flat YAML, got {type(value).__name__}")


_SIMPLE_ESCAPES = {'"': '\\"', "\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
_UNESCAPES = {
    "0": "\0", "a": "\a", "b": "\b", "t": "\t", "\t": "\t", "n": "\n", "v": "\v", "f": "\f",
    "r": "\r", "e": "\x1b", " ": " ", '"': '"', "/": "/", "\\": "\\", "N": "\x85",
    "_": "\xa0", "L": "\u2028", "P": "\u2029",
}
_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}
# words that YAML 1.1 readers turn into booleans or null: not usable as plain keys
_RESERVED = {"yes", "no", "true", "false", "on", "off", "null", "y", "n"}


def _printable(o: int) -> bool:
    """YAML's printable set, less the characters YAML 1.1 treats as line breaks and the BOM."""
    return ((0x20 <= o <= 0x7E or 0xA0 <= o <= 0xD7FF or 0xE000 <= o <= 0xFFFD or 0x10000 <= o <= 0x10FFFF)
            and o not in (0x2028, 0x2029, 0xFEFF))


def _quote(text: str) -> str:
    """A YAML double-quoted scalar for ``text`` (any reader gets the same string back)."""
    out = ['"']
    for ch in text:
        o = ord(ch)
        if ch in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[ch])
        elif 0xD800 <= o <= 0xDFFF:
            raise ValueError("strings with lone surrogates cannot be written as YAML")
        elif _printable(o):
            out.append(ch)
        elif o <= 0xFF:
            out.append(f"\\x{o:02x}")
        elif o <= 0xFFFF:
            out.append(f"\\u{o:04x}")
        else:
            out.append(f"\\U{o:08x}")
    out.append('"')
    return "".join(out)


def _unquote(value: str, where: str) -> str:
    """Read a YAML double-quoted scalar written on one line."""
    if len(value) < 2 or not value.endswith('"'):
        raise ValueError(f"{where}: bad double-quoted string {value}")
    body, out, i = value[1:-1], [], 0
    while i < len(body):
        ch = body[i]
        if ch == '"':
            raise ValueError(f"{where}: unescaped quote in {value}")
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        if i + 1 >= len(body):
            raise ValueError(f"{where}: dangling backslash in {value}")
        code = body[i + 1]
        if code in _HEX_ESCAPES:
            n = _HEX_ESCAPES[code]
            digits = body[i + 2 : i + 2 + n]
            if len(digits) != n or any(c not in "0123456789abcdefABCDEF" for c in digits):
                raise ValueError(f"{where}: bad escape in {value}")
            out.append(chr(int(digits, 16)))
            i += 2 + n
        elif code in _UNESCAPES:
            out.append(_UNESCAPES[code])
            i += 2
        else:
            raise ValueError(f"{where}: unknown escape \\{code} in {value}")
    return "".join(out)


def dump_flat(mapping: dict, header: str | None = None) -> str:
    """Write a flat mapping of scalars as YAML text (keys in the given order)."""
    lines = [f"# {line}".rstrip() for line in header.splitlines()] if header else []
    for key, value in mapping.items():
        if not isinstance(key, str) or not _KEY.match(f"{key}: x") or key.lower() in _RESERVED:
            raise ValueError(f"not a plain YAML key: {key!r}")
        lines.append(f"{key}: {_format(value)}")
    return "\n".join(lines) + "\n"


def _strip_comment(value: str) -> str:
    quote = None
    for i, ch in enumerate(value):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#" and (i == 0 or value[i - 1].isspace()):
            return value[:i].rstrip()
    return value


def _parse(value: str, where: str):
    if value in ("", "~", "null", "Null", "NULL"):
        return None
    if value in ("true", "True", "TRUE"):
        return True
    if value in ("false", "False", "FALSE"):
        return False
    if value.startswith('"'):
        return _unquote(value, where)
    if value.startswith("'"):
        if len(value) < 2 or not value.endswith("'"):
            raise ValueError(f"{where}: bad single-quoted string {value}")
        return value[1:-1].replace("''", "'")
    if _INT.match(value):
        return int(value)
    if _FLOAT.match(value):
        return float(value)
    low = value.lower()
    if low in (".inf", "+.inf", "-.inf", ".nan"):
        return float(low.replace(".", ""))
    if value[0] in "[{&*!|>%@`" or value.startswith("- "):
        raise ValueError(f"{where}: only flat scalar values are supported, got {value!r}")
    return value


def load_flat(text: str, name: str = "<yaml>") -> dict:
    """Read a flat ``key: scalar`` YAML mapping; errors name ``name`` and the line."""
    out: dict = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        if not line.strip() or line.lstrip().startswith("#") or line.strip() in ("---", "..."):
            continue
        where = f"{name}:{lineno}"
        if line[0].isspace():
            raise ValueError(f"{where}: nested values are not supported in a flat mapping")
        m = _KEY.match(line)
        if not m:
            raise ValueError(f"{where}: expected 'key: value', got {line!r}")
        key, value = m.group(1), _strip_comment(m.group(2) or "")
        if key in out:
            raise ValueError(f"{where}: duplicate key {key!r}")
        out[key] = _parse(value, where)
    return out
