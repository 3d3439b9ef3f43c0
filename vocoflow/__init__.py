"""vocoflow: flow-based neural vocoders with exact likelihoods."""

__version__ = "0.1.0"
