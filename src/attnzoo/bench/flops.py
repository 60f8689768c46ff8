"""The one FLOP counter of attnzoo: ``attnzoo bench`` and ``attnzoo compare`` both count with it.

:class:`torch.utils.flop_counter.FlopCounterMode` counts matrix products, convolutions and attention (one
multiply-add = 2 FLOPs; element-wise ops, pooling and softmax are not counted).  It does not know
matrix-vector products nor the CPU flash-attention kernels that ``scaled_dot_product_attention`` dispatches to
on CPU, so those are added here (attention with the formula torch uses for the CUDA kernels): without them a
module built on SDPA would count as free on CPU.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn as nn

__all__ = ["custom_flop_mapping", "count_flops", "model_flops"]


def _flash_cpu_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _flash_cpu_backward_flop(
    grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs
) -> int:
    from torch.utils.flop_counter import sdpa_backward_flop_count

    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def _mv_flop(mat_shape, vec_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * mat_shape[0] * mat_shape[1]


def _dot_flop(a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * a_shape[0]


def _addmv_flop(self_shape, mat_shape, vec_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * mat_shape[0] * mat_shape[1]


def custom_flop_mapping() -> dict:
    """Ops torch's counter does not know: matrix-vector products and the CPU flash-attention kernels."""
    aten = torch.ops.aten
    mapping = {aten.mv: _mv_flop, aten.dot: _dot_flop, aten.addmv: _addmv_flop}
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
        mapping[aten._scaled_dot_product_flash_attention_for_cpu] = _flash_cpu_flop
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward"):
        mapping[aten._scaled_dot_product_flash_attention_for_cpu_backward] = _flash_cpu_backward_flop
    return mapping


def count_flops(forward: Callable[[], Any], backward: Callable[[Any], None] | None = None) -> tuple[int, int | None]:
    """(forward FLOPs, forward+backward FLOPs) of one call, counted with ``FlopCounterMode``."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False, custom_mapping=custom_flop_mapping()) as counter:
        out = forward()
        fwd = int(counter.get_total_flops())
        total = None
        if backward is not None:
            backward(out)
            total = int(counter.get_total_flops())
    return fwd, total


def model_flops(model: nn.Module, *args: Any) -> int:
    """Forward FLOPs of ``model(*args)`` in eval mode without autograd (the mode is restored afterwards)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return count_flops(lambda: model(*args))[0]
    finally:
        model.train(was_training)
