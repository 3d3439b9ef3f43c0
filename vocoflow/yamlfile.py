"""Reading a YAML file safely (``yaml.safe_load``), with errors that name the file.

Every YAML file vocoflow reads with PyYAML goes through :func:`read_yaml_file` (the ``audio``
layer, which does without PyYAML, has its own flat reader). This module imports nothing of
vocoflow, so every layer above ``audio`` may use it.

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

__all__ = ["YAMLFileError", "MissingYAMLFile", "read_yaml_file"]


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
        raise YAMLFileError(f"{name}: not valid YAML ({e})") from None
