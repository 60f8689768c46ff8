"""Shared building blocks of the modules, and the extension API for third-party modules.

Public (``__all__``, documented in docs/api.md, stable within a minor version): the base classes ``AttnModule``
and ``Gate``, the attention entry point ``attention``, the argument and input checks, the width, token and head
helpers, the activation / norm factories and ``ConvNormAct``, the checkpoint-compatibility helpers, and the
tracing helpers re-exported from :mod:`attnzoo.tracing`.

The library's own modules also import internal helpers from here (pooling tricks, pyramid helpers, init
helpers, ...): they are not in ``__all__`` and may change in any release.  Input checks are FX leaves wherever
they are called from (see :func:`fx_leaf`).
"""

from .attention import attention
from .base import AttnModule, Gate
from .checks import (
    check_arg,
    check_choice,
    check_context,
    check_dims,
    check_dropout,
    check_heads,
    check_nchw,
    check_rank,
    check_same_shape,
    check_spatial,
    fx_leaf,
    non_negative_int,
    odd_kernel,
    positive_int,
    positive_number,
    resolve_dim_head,
)
from .compat import migrate_keys, renamed_args
from .create_act import ActLayer, get_act
from .helpers import (
    heads_to_map,
    hidden_width,
    inplace_ok,
    map_to_heads,
    merge_heads,
    split_heads,
    to_map,
    to_tokens,
    traced_size,
)
from .norm import ConvBN, ConvNormAct, NormLayer, make_norm
from .pyramid import check_level_channels, check_pyramid

# isort: split
# Internal: imported by attnzoo's own modules; not public, may change in any release.
from .batchnorm import (  # noqa: F401
    PooledBatchNorm1d,
    PooledBatchNorm2d,
    PooledBatchNorm3d,
    PooledBatchNormMap1d,
    check_bn_values,
)
from .checks import (  # noqa: F401
    DEPTH_BOUND,
    KERNEL_BOUND,
    RATIO_BOUND,
    TABLE_BOUND,
    SizeBound,
    check_window_args,
    width_or,
)
from .compat import deprecated_args_of  # noqa: F401
from .create_act import HardSigmoid, HardSwish  # noqa: F401
from .helpers import spread_count  # noqa: F401
from .nd import (  # noqa: F401
    AXES,
    SPATIAL_RANKS,
    adaptive_avg_pool_fn,
    adaptive_max_pool_fn,
    as_map,
    avg_pool_fn,
    batch_norm_nd,
    check_channels_rank,
    check_rank_arg,
    conv_fn,
    conv_nd,
    linear_mode,
    max_pool_fn,
    odd_kernel_nd,
    per_axis,
    spatial_axes,
    unit_shape,
)
from .norm import conv1x1, group_norm_groups, init_weights, zero_bn  # noqa: F401
from .pooling import (  # noqa: F401
    MaxPool3x3s2,
    ZPoolGate,
    avg_reduce,
    max_over,
    max_pool_2x2_ceil,
    max_pool_3x3_s2,
    max_pool_ceil,
    pad_to_multiple,
    z_pool,
)
from .pyramid import fit_to, init_caffe2_xavier, softmax_fp32, stride2_size  # noqa: F401

__all__ = [
    # bases and the attention entry point
    "AttnModule",
    "Gate",
    "attention",
    # argument and input checks (ValueError naming the module, the expected and the received value)
    "check_arg",
    "check_choice",
    "check_context",
    "check_dims",
    "check_dropout",
    "check_heads",
    "check_level_channels",
    "check_nchw",
    "check_pyramid",
    "check_rank",
    "check_same_shape",
    "check_spatial",
    "hidden_width",
    "non_negative_int",
    "odd_kernel",
    "positive_int",
    "positive_number",
    "resolve_dim_head",
    # layouts, tokens and heads
    "heads_to_map",
    "map_to_heads",
    "merge_heads",
    "split_heads",
    "to_map",
    "to_tokens",
    # factories
    "ActLayer",
    "ConvNormAct",
    "ConvBN",
    "NormLayer",
    "get_act",
    "make_norm",
    # checkpoint compatibility
    "migrate_keys",
    "renamed_args",
    # tracing helpers (also in attnzoo.tracing)
    "fx_leaf",
    "inplace_ok",
    "traced_size",
]
