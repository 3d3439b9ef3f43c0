"""Reading a YAML file safely (``yaml.safe_load``), with errors that name the file.

Every YAML file vocoflow reads goes through :func:`read_yaml_file` or, for text already in
memory, :func:`load_yaml_text`; flat ``key: scalar`` documents (feature configurations) through
:func:`load_flat_mapping`. Errors name the file and the line. This module imports nothing of
vocoflow, so every layer may use it.

>>> import os, tempfile
>>> p = os.path.join(tempfile.mkdtemp(), "c.yaml")
>>> _ = open(p, "w").write("model: {type: waveglow}\\n")
>>> read_yaml_file(p)
{'model': {'type': 'waveglow'}}
>>> read_yaml_file(p + ".missing")  # doctest: +ELLIPSIS
Traceback (most recent call last):
    ...
vocoflow.yamlfile.MissingYAMLFile: ...c.yaml.missing: no such file
"""

from __future__ import annotations

import os

__all__ = ["YAMLFileError", "MissingYAMLFile", "read_yaml_file", "load_yaml_text", "load_flat_mapping"]


class YAMLFileError(ValueError):
    """A YAML file that is missing, unreadable or not valid YAML; the message names it."""


class MissingYAMLFile(YAMLFileError, FileNotFoundError):
    """The YAML file does not exist (also a ``FileNotFoundError``)."""


def read_yaml_file(path: str | os.PathLike):
    """The document of a YAML file (``None`` when it is empty), read with ``yaml.safe_load``.

    Raises :class:`YAMLFileError` (a ``ValueError``) naming the file when it does not exist,
    cannot be read or decoded as UTF-8, or is not valid YAML."""
    import yaml

    name = os.fspath(path)
    if not os.path.isfile(name):
        raise MissingYAMLFile(f"{name}: no such file")
    try:
        with open(name, encoding="utf-8") as f:
            return yaml.safe_load(f)
    except OSError as e:
        raise YAMLFileError(f"{name}: cannot read it ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise YAMLFileError(f"{name}: not UTF-8 text ({e})") from None
    except yaml.YAMLError as e:
        raise YAMLFileError(_invalid(name, e)) from None


def _invalid(name: str, e) -> str:
    """``NAME:LINE: not valid YAML (problem)`` from a PyYAML error (the line where the
    offending construct starts)."""
    mark = getattr(e, "context_mark", None) or getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    where = f"{name}:{mark.line + 1}" if mark is not None else name
    return f"{where}: not valid YAML ({problem})"


def load_yaml_text(text: str, name: str = "<yaml>"):
    """``yaml.safe_load(text)``; a :class:`YAMLFileError` naming ``name`` and the line when it
    is not valid YAML.

    >>> load_yaml_text("a: [1,\\n", "x.yaml")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    vocoflow.yamlfile.YAMLFileError: x.yaml:2: not valid YAML (expected the node content...)
    """
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise YAMLFileError(_invalid(name, e)) from None


def load_flat_mapping(text: str, name: str = "<yaml>") -> dict:
    """A YAML document that is one mapping of scalar values (an empty document gives ``{}``),
    read with ``yaml.safe_load``. Nested values, duplicate keys and documents that are not a
    mapping are refused with a :class:`YAMLFileError` naming ``name`` and the line.

    >>> load_flat_mapping("# c\\nn_mels: 80\\nfmax: ~\\n")
    {'n_mels': 80, 'fmax': None}
    >>> load_flat_mapping("a: 1\\nb:\\n  c: 2\\n", "x.yaml")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    vocoflow.yamlfile.YAMLFileError: x.yaml:3: nested values are not supported ...
    """
    import yaml

    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        raise YAMLFileError(_invalid(name, e)) from None
    if node is None:
        return {}
    if not isinstance(node, yaml.MappingNode):
        raise YAMLFileError(f"{name}:{node.start_mark.line + 1}: expected a mapping of 'key: value' lines")
    seen = set()
    for key, value in node.value:
        line = key.start_mark.line + 1
        if not isinstance(key, yaml.ScalarNode):
            raise YAMLFileError(f"{name}:{line}: keys must be plain scalars")
        if not isinstance(value, yaml.ScalarNode):
            raise YAMLFileError(f"{name}:{value.start_mark.line + 1}: nested values are not supported in a flat "
                                f"mapping (key {key.value!r})")
        if key.value in seen:
            raise YAMLFileError(f"{name}:{line}: duplicate key {key.value!r}")
        seen.add(key.value)
    return load_yaml_text(text, name)
