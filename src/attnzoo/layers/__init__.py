"""Shared building blocks of the modules: checks, the base classes, width and layout helpers, activation and
norm factories, ``ConvNormAct``, pooling tricks, pyramid helpers and the attention entry point.

Modules import what they use from here (``from ..layers import check_nchw, Gate``): input checks are FX leaves
wherever they are called from (see :func:`fx_leaf`).
"""

from .attention import attention
from .base import AttnModule, Gate
from .batchnorm import PooledBatchNorm1d, PooledBatchNorm2d, check_bn_values
from .checks import (
    check_arg,
    check_choice,
    check_context,
    check_dims,
    check_dropout,
    check_heads,
    check_nchw,
    check_same_shape,
    check_window_args,
    fx_leaf,
    non_negative_int,
    odd_kernel,
    positive_int,
    positive_number,
    resolve_dim_head,
)
from .compat import deprecated_args_of, migrate_keys, renamed_args
from .create_act import ActLayer, HardSigmoid, HardSwish, get_act
from .helpers import (
    exporting,
    heads_to_map,
    hidden_width,
    inplace_ok,
    map_to_heads,
    merge_heads,
    split_heads,
    spread_count,
    to_map,
    to_tokens,
    traced_size,
)
from .norm import ConvNormAct, NormLayer, conv1x1, group_norm_groups, make_norm, zero_bn
from .pooling import (
    MaxPool3x3s2,
    ZPoolGate,
    avg_reduce,
    max_over,
    max_pool_2x2_ceil,
    max_pool_3x3_s2,
    pad_to_multiple,
    z_pool,
)
from .pyramid import (
    check_level_channels,
    check_pyramid,
    fit_to,
    init_caffe2_xavier,
    softmax_fp32,
    stride2_size,
)

__all__ = [
    "traced_size",
    "exporting",
    "attention",
    "AttnModule",
    "Gate",
    "PooledBatchNorm1d",
    "PooledBatchNorm2d",
    "check_bn_values",
    "fx_leaf",
    "renamed_args",
    "deprecated_args_of",
    "migrate_keys",
    "check_arg",
    "check_choice",
    "check_context",
    "check_dims",
    "check_dropout",
    "check_heads",
    "check_nchw",
    "check_same_shape",
    "check_window_args",
    "non_negative_int",
    "odd_kernel",
    "positive_int",
    "positive_number",
    "resolve_dim_head",
    "ActLayer",
    "HardSigmoid",
    "HardSwish",
    "get_act",
    "hidden_width",
    "heads_to_map",
    "map_to_heads",
    "inplace_ok",
    "merge_heads",
    "split_heads",
    "spread_count",
    "to_map",
    "to_tokens",
    "ConvNormAct",
    "conv1x1",
    "NormLayer",
    "group_norm_groups",
    "make_norm",
    "zero_bn",
    "MaxPool3x3s2",
    "ZPoolGate",
    "avg_reduce",
    "max_over",
    "max_pool_2x2_ceil",
    "max_pool_3x3_s2",
    "pad_to_multiple",
    "z_pool",
    "check_level_channels",
    "check_pyramid",
    "fit_to",
    "init_caffe2_xavier",
    "softmax_fp32",
    "stride2_size",
]
