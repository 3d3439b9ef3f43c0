"""Conditioner networks (torch only) that plug into :mod:`vocoflow.flows` couplings."""

from .upsample import MelUpsampler
from .wavenet import WN, BlockedWN, WNStepCache

__all__ = ["WN", "BlockedWN", "WNStepCache", "MelUpsampler"]
