"""The bijector core: invertible layers shared by every vocoflow model.

Contract (see :class:`Bijector`): ``forward(x, cond=None) -> (z, logdet)`` maps data to latent
with ``logdet = log|det dz/dx|`` per batch item; ``inverse(z, cond=None) -> (x, logdet)`` maps
back with ``log|det dx/dz|``.
"""

from .augment import CrossUnitAugment
from .autoregressive import IAF
from .base import Bijector, Inverse, NonConvergenceError, Sequential, sum_except_batch
from .conditioners import CausalConvNet, ConvNet
from .coupling import AdditiveCoupling, AffineCoupling, Coupling, MixLogisticCoupling
from .distributions import (
    BASE_DISTRIBUTIONS,
    GaussianCopula,
    Logistic,
    Normal,
    StudentT,
    build_base,
    gaussian_log_prob,
    student_t_log_prob,
)
from .elementwise import AffineMap, ChainMap, ElementwiseMap, MixLogisticMap, ShiftMap, make_map
from .flow import Flow
from .linear import Invertible1x1Conv, Reverse, Shuffle
from .lipschitz import ACTIVATIONS, CLipSwish, LipSwish, SpectralNormLayer
from .normalization import ActNorm, Scale
from .reshape import Split, Squeeze
from .residual import ResidualBlock
from .vi import PlanarFlow, RadialFlow, VectorIAF
from .wavelet import HaarWavelet

__all__ = [
    "Bijector", "Sequential", "Inverse", "NonConvergenceError", "sum_except_batch",
    "AdditiveCoupling", "AffineCoupling", "MixLogisticCoupling", "Coupling",
    "ShiftMap", "AffineMap", "MixLogisticMap", "ChainMap", "ElementwiseMap", "make_map",
    "Invertible1x1Conv", "Reverse", "Shuffle", "ActNorm", "Scale", "Squeeze", "Split",
    "ResidualBlock", "SpectralNormLayer", "LipSwish", "CLipSwish", "ACTIVATIONS",
    "IAF", "ConvNet", "CausalConvNet", "Normal", "Logistic",
    "gaussian_log_prob", "Flow",
    "StudentT", "GaussianCopula", "student_t_log_prob", "BASE_DISTRIBUTIONS", "build_base",
    "CrossUnitAugment", "HaarWavelet",
    "PlanarFlow", "RadialFlow", "VectorIAF",
]
