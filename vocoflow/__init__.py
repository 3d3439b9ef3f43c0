"""vocoflow: flow-based neural vocoders with exact likelihoods.

>>> import vocoflow
>>> callable(vocoflow.load)
True
"""

__version__ = "0.1.0"

__all__ = ["load", "Vocoder", "__version__"]


def __getattr__(name):
    # lazy: `import vocoflow` stays light; the vocoder stack loads on first use
    if name in ("load", "Vocoder"):
        from . import vocoders

        return getattr(vocoders, name)
    raise AttributeError(f"module 'vocoflow' has no attribute {name!r}")
