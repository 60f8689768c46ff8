"""The deployment variants: per module, the configurations ``attnzoo deploy --variants`` exports besides the
defaults (users deploy the variants they trained, not the defaults).

Every module is deployed in these configurations (:func:`configurations`):

1. ``defaults``: the default arguments at the layout's default channels (the configuration of the main matrix);
2. ``test_kwargs``: the contract's configuration (``ModuleInfo.test_kwargs``) at the contract's small channels
   (:func:`small_channels`), so that what the tests build is also what is deployed;
3. every entry of :data:`VARIANTS`: arguments merged over ``test_kwargs``, at the small channels: every choice of
   every mode switch (a string-valued constructor argument that picks a computation: ``variant=``, ``mode=``,
   ``downsampling=``, ``pooling=``, ``style=``, ``partition=``, ``pos=`` …) and a small non-default configuration
   (fewer or more heads, groups > 1, another kernel size, a structural flag off).

``tests/test_deploy_variants.py`` checks that every mode switch of every registered module's constructor, and
every choice it accepts, appears here; activation-function arguments (``act=``, ``gate=`` of an activation
name) are element-wise choices, not mode switches, and are not required.
"""

from __future__ import annotations

from typing import Any, Mapping

import attnzoo

__all__ = [
    "VARIANTS",
    "VARIANT_EXCEPTIONS",
    "VARIANT_SIZES",
    "ACTIVATION_ARGS",
    "configurations",
    "declared_variant",
    "small_channels",
    "label",
]

#: The two sizes of the variants table: an even square and an odd non-square size (paddings, window counts
#: and poolings that do not divide).  Small, so the table stays cheap.
VARIANT_SIZES = ((16, 16), (13, 11))

#: String-valued constructor arguments that name an activation function (element-wise; not mode switches).
ACTIVATION_ARGS = ("act", "gate")

#: Per module: argument overrides merged over ``test_kwargs`` (at :func:`small_channels`, or at ``channels``
#: where an entry names it).  Mode switches first (every choice that is not already the ``test_kwargs``/default
#: one), then the small non-default configurations.
VARIANTS: dict[str, tuple[Mapping[str, Any], ...]] = {
    "a2c2f": ({"variant": "turbo"}, {"area": 1, "residual": True, "num_repeats": 2}),
    "aa_conv": ({"heads": 4, "kernel_size": 5},),
    "acmix": ({"heads": 4, "kernel_att": 5, "kernel_conv": 5},),
    "aff": ({"variant": "official"}, {"iterative": True, "reduction": 4}),
    "afpn": ({"num_blocks": 2, "reduction": 4},),
    "agent_attention": ({"heads": 4, "agents": 9},),
    "aifi": ({"pos": "yx"}, {"pos": "rtdetr"}, {"heads": 4, "act": "relu"}),
    "area_attention": ({"variant": "turbo"}, {"area": 4, "heads": 4}),
    "asff": ({"norm": "gn"}, {"norm": None}, {"level": 0, "return_weights": True}, {"level": 2}),
    "attention_gate": ({"variant": "monai"}, {"out_conv": True, "inner_channels": 8}),
    "axial": ({"heads": 4, "dim_head": 2, "qkv_bias": True},),
    "bam": ({"fusion": "mul"}, {"reduction": 4, "dilation": 2}),
    "bat": ({"block_size": 3, "groups": 4},),
    "bifpn": ({"variant": "official"}, {"fusion": "softmax"}, {"fusion": "sum"}, {"num_repeats": 2}),
    "bot_mhsa": ({"heads": 4, "stride": 2},),
    "bra": ({"heads": 4, "n_win": 3, "topk": 1, "kernel_size": 3},),
    "c2psa": ({"heads": 4, "num_repeats": 2},),
    "caa": ({"variant": "bn_silu"}, {"kernel_size": 5}),
    "carafe": ({"k_up": 5, "groups": 2, "scale": 3},),
    "cascaded_group_attention": ({"heads": 4, "window_size": 4, "kernel_size": 5},),
    "cbam": ({"spatial": False}, {"reduction": 4, "kernel_size": 3, "min_hidden": 1}),
    "cbam_channel": ({"reduction": 4, "min_hidden": 1},),
    "cbam_spatial": ({"kernel_size": 3},),
    "ceca": ({"kernel_size": 5},),
    "cglu": ({"residual": True, "hidden_channels": 8},),
    "cgnl": ({"kernel_type": "gaussian"}, {"groups": 2, "order": 2, "use_scale": True}),
    "clo_attention": ({"heads": 4, "group_split": (2, 2), "kernels": (5,), "window_size": 3},),
    "coord": ({"reduction": 4, "min_hidden": 2},),
    "cot": ({"kernel_size": 5, "share_planes": 4},),
    "cpam": ({"reduction": 4},),
    "cpca": ({"reduction": 2},),
    "criss_cross": ({"recurrence": 2, "reduction": 4},),
    "cross_layer_nonlocal": ({"use_scale": False, "inner_channels": 4},),
    "danet": ({"reduction": 4},),
    "danet_channel": (),
    "danet_position": ({"reduction": 2},),
    "dcnv2": ({"backend": "torchvision"}, {"backend": "pure"}, {"kernel_size": 5, "deform_groups": 2, "stride": 2}),
    "deformable_attention": (
        {"position_bias": "log_cpb"},
        {"position_bias": None},
        {"heads": 4, "groups": 1, "stride": 2, "kernel_size": 5},
    ),
    "dilated_inception": ({"padding": "causal"}, {"padding": "causal", "dilation": 2}),
    "double_attention": ({"c_m": 8, "c_n": 4},),
    "dysample": ({"style": "pl"}, {"dyscope": True, "groups": 4}),
    "eca": ({"kernel_size": 5},),
    "efficient_self_attention": ({"sr_mode": "avg"}, {"heads": 4, "sr_ratio": 2, "qkv_bias": False}),
    "ela": ({"variant": "T", "channels": 32}, {"variant": "S"}, {"variant": "L"}),
    "ema": ({"factor": 8},),
    "epsa": ({"order": "paper"}, {"shared_se": False, "kernels": (3, 5), "groups": (1, 2)}),
    "ese": (),
    "external_attention": ({"memory": 16},),
    "fca": ({"freq_sel": "low4"}, {"freq_sel": "bot8"}, {"freq_sel": "top1", "reduction": 4}),
    "focal_modulation": ({"focal_level": 3, "use_post_norm": True, "normalize_modulator": True},),
    "fpn": (
        {"extra_levels": "maxpool"},
        {"extra_levels": "p6p7"},
        {"extra_levels": "p6p7", "p6_from": "c5"},
        {"extra_levels": "p6p7", "p6_from": "p5"},
    ),
    "freqfusion": ({"hamming": False, "groups": 2, "k_lp": 3},),
    "gam": ({"variant": "grouped"}, {"variant": "yoloair"}, {"reduction": 2}),
    "gated_tcn": ({"padding": "causal"}, {"padding": "causal", "dilation": 2}),
    "gc": ({"pooling": "avg"}, {"fusion": "mul"}, {"fusion": "add_mul"}, {"reduction": 4, "min_hidden": 1}),
    "gct": ({"mode": "l1"},),
    "gd_inject": ({"legacy_pool_gate": True},),
    "gd_neck": ({"heads": 4, "num_layers": 2},),
    "ge": ({"extent": 2, "use_mlp": False}, {"extent": 0, "extra_params": False}),
    "generalized_attention": (
        {"attn_type": "1000"},
        {"attn_type": "0100"},
        {"attn_type": "0010"},
        {"attn_type": "0001"},
        {"heads": 4, "kv_stride": 1},
    ),  # fmt: skip
    "global_attention": ({"heads": 4, "dim_head": 4, "qkv_bias": True},),
    "halo": ({"halo_size": 0}, {"block_size": 2, "halo_size": 2, "heads": 4}),
    "hs_fpn": ({"cascade": False, "reduction": 2},),
    "irmb": ({"partition": "window"}, {"window_size": 4, "expansion": 2.0, "kernel_size": 5}),
    "lambda_layer": ({"heads": 4, "local_size": 5},),
    "lcbam": ({"kernel_size": 3},),
    "lite_mla": ({"dim_head": 4, "kernels": (3, 5)},),
    "lka": (),
    "local_window": ({"kernel_size": 4, "stride": 2}, {"heads": 4, "kernel_size": 5}),
    "lsk": ({"hidden_channels": 4},),
    "lska": ({"kernel_size": 11},),
    "mhsa": ({"heads": 4, "qkv_bias": False},),
    "mixed_pooling": ({"pool_sizes": (4, 2), "reduction": 2},),
    "mlca": ({"local_size": 3, "local_weight": 0.2},),
    "mobilevit": ({"heads": 4, "num_layers": 1, "patch_size": 3},),
    "mobilevit_v2": ({"num_layers": 1, "patch_size": 3},),
    "ms_deform_attn": ({"heads": 4, "points": 4},),
    "multipole": (
        {"downsampling": "avg_pool"},
        {"upsampling": "nearest"},
        {"downsampling": "avg_pool", "upsampling": "nearest"},
        {"kernel_size": 2, "shared": False, "max_levels": 3, "sampling_rate": 3},
    ),
    "neighborhood": ({"dilation": 2}, {"heads": 4, "kernel_size": 5, "position_bias": False}),
    "nonlocal": (
        {"mode": "gaussian"},
        {"mode": "dot_product"},
        {"mode": "concatenation"},
        {"subsample": False, "use_bn": False, "use_scale": False},
    ),  # fmt: skip
    "outlook": ({"kernel_size": 5}, {"stride": 2, "heads": 4}),
    "panet": ({"extra_levels": "maxpool"},),
    "parnet_sse": (),
    "polarized": ({"mode": "sequential"}, {"qkv_bias": True}),
    "positional_encoding": ({"base": 100.0},),
    "positional_encoding_2d": ({"base": 100.0},),
    "psa": ({"heads": 4, "expansion": 1.0},),
    "sagan": ({"pool": True}, {"reduction": 2, "bias": False}),
    "scsa": ({"heads": 8, "window_size": 4},),
    "scse": ({"mode": "max"}, {"reduction": 2}),
    "se": ({"reduction": 4, "min_hidden": 1, "act": "silu", "gate": "hard_sigmoid"},),
    "self_attention_block": (
        {"attn_type": "standard"},
        {"attn_type": "efficient"},
        {"attn_type": "efficient", "sr_mode": "avg"},
    ),  # fmt: skip
    "sge": ({"groups": 4},),
    "shsa": ({"qk_channels": 8, "partial_channels": 8},),
    "shuffle_attention": ({"groups": 2},),
    "simam": (),
    "simplified_mhsa": ({"heads": 4},),
    "sk": ({"kernels": (3, 5, 7), "groups": 4, "reduction": 4, "min_hidden": 4, "keep_3x3": False},),
    "spatial_self_attention": ({"heads": 2, "reduction": 4},),
    "spd_conv": ({"scale": 3},),
    "splat": ({"radix": 4, "groups": 2, "min_hidden": 4},),
    "ssff": (),
    "strip_pooling": (),
    "swin": ({"shift_size": 0}, {"window_size": 4, "shift_size": 2, "heads": 4}),
    "tfe": ({"level": 0}, {"level": 2}),
    "transformer_encoder": ({"act": "gelu", "final_norm": False, "num_layers": 1, "heads": 4},),
    "triplet": ({"spatial": False}, {"kernel_size": 3}),
    "weighted_fusion": ({"fusion": "softmax"}, {"fusion": "sum"}),
}


def small_channels(name: str) -> int:
    """The contract's small channel count for ``name`` (8 for pyramids, whose levels double, and temporal maps;
    16 otherwise), at which ``test_kwargs`` and the variants are built."""
    return 8 if attnzoo.info(name).layout in ("pyramid", "temporal") else 16


def label(kwargs: Mapping[str, Any]) -> str:
    """``k=v, …`` (Python literals; tuples as written)."""
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


def configurations(name: str) -> list[tuple[str, dict[str, Any], int | None]]:
    """``[(label, kwargs, channels)]`` of ``name``'s deployment variants, duplicates removed: the defaults
    (channels None: the layout's default), ``test_kwargs`` and every :data:`VARIANTS` entry merged over it (at
    :func:`small_channels`)."""
    info = attnzoo.info(name)
    small = small_channels(name)
    test_kwargs = dict(info.test_kwargs)
    out: list[tuple[str, dict[str, Any], int | None]] = [("defaults", {}, None)]
    out.append(
        ("test_kwargs" + (f": {label(test_kwargs)}" if test_kwargs else " (defaults, small)"), test_kwargs, small)
    )
    seen = {repr((small, sorted(test_kwargs.items())))}
    for extra in VARIANTS.get(name, ()):
        kwargs = {**test_kwargs, **extra}
        channels = kwargs.pop("channels", small)
        key = repr((channels, sorted(kwargs.items())))
        if key not in seen:
            seen.add(key)
            out.append((label(extra), kwargs, channels))
    return out


#: Variants that fail in a runtime for a reason the module cannot work around: ``{module: ((arguments, runtime,
#: reason), …)}``; a configuration whose arguments include ``arguments`` is reported ``declared`` in that runtime
#: (and must fail there: a declared variant that runs is reported, as for ``ModuleInfo.exceptions``).
VARIANT_EXCEPTIONS: dict[str, tuple[tuple[Mapping[str, Any], str, str], ...]] = {
    "neighborhood": (
        (
            {"dilation": 2},
            "ncnn",
            "dilation > 1 on a map of at least 2·kernel_size: the dilated neighbourhoods are interleaved sub-grids "
            "(stride-δ slices) gathered with index_select, and ncnn has neither gather nor step slices; pnnx stops "
            "at 'unbind along batch axis 0'.  The ncnn form covers effective dilation 1 (smaller maps, DiNAT's "
            "undilated layers); use ONNX Runtime or OpenVINO for dilated layers",
        ),
    ),
}


def declared_variant(name: str, kwargs: Mapping[str, Any], runtime: str) -> str | None:
    """The declared reason why ``name`` built with ``kwargs`` does not run in ``runtime``, or None."""
    for args, rt, reason in VARIANT_EXCEPTIONS.get(name, ()):
        if rt == runtime and all(k in kwargs and kwargs[k] == v for k, v in args.items()):
            return reason
    return None
