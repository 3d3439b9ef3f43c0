"""Conditioner networks (torch only) that plug into :mod:`vocoflow.flows` couplings."""

from .upsample import MelUpsampler
from .wavenet import WN

__all__ = ["WN", "MelUpsampler"]
