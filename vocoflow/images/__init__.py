"""Image flows (NICE, RealNVP, Glow, DenseFlow, residual flows), image data and bits per dimension.

Built only from :mod:`vocoflow.flows` and :mod:`vocoflow.nets`. Pixels enter as 8-bit values;
:class:`DataScaling` maps them to the model's range and its log-Jacobian is part of every
likelihood, so ``ImageFlow.bits_per_dim`` is the bits/dim of the 8-bit data.
"""

from .baseline import CategoricalBaseline, categorical_baseline_bpd
from .data import (
    DATASETS,
    ImageDataError,
    ImageDataset,
    load_cifar10,
    load_digits,
    load_idx_split,
    load_prepared,
    load_raw_dataset,
    read_idx,
    save_prepared,
)
from .dequantization import VariationalDequantizer, uniform_noise
from .layers import DataScaling, Flatten, Permute, UniformBox
from .models import (
    IMAGE_MODELS,
    ImageFlow,
    build_image_flow,
    denseflow,
    glow,
    load_image_flow,
    nice,
    realnvp,
    resflow,
)
from .png import make_grid, write_png

__all__ = [
    "ImageFlow", "nice", "realnvp", "glow", "denseflow", "resflow", "build_image_flow", "load_image_flow",
    "IMAGE_MODELS", "DataScaling", "Flatten", "Permute", "UniformBox", "VariationalDequantizer",
    "uniform_noise", "CategoricalBaseline", "categorical_baseline_bpd", "ImageDataError",
    "ImageDataset", "read_idx", "load_idx_split", "load_cifar10", "load_digits",
    "load_raw_dataset", "save_prepared", "load_prepared", "DATASETS", "make_grid", "write_png",
]
