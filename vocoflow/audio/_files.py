"""The atomic-write helpers, now in :mod:`vocoflow.atomic` (a top-level module every layer may
import); re-exported here under their old names."""

from vocoflow.atomic import *  # noqa: F403
from vocoflow.atomic import __all__  # noqa: F401
