"""Shared pytest configuration. Audio-test helpers live in tests/data_fixtures.py."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def good_data_dir(tmp_path):
    """A valid Kaldi data dir of four short tones (see data_fixtures.make_good_data_dir)."""
    from data_fixtures import make_good_data_dir

    return make_good_data_dir(tmp_path)
