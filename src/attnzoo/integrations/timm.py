"""timm compatibility: an attnzoo module as timm's ``attn_layer`` / ``se_layer``.

timm builds a block's attention with ``create_attn(attn_layer, channels, device=..., dtype=...)``; anything
callable that is not a string is used as the class.  :func:`timm_attn` returns such a callable::

    model = timm.create_model("resnet26d", block_args=dict(attn_layer=attnzoo.timm_attn("eca")))

(timm's ``ResNet`` takes the block's ``attn_layer`` through ``block_args``; ``create_model("resnet26d",
attn_layer=...)`` is rejected by timm itself.)  The module lands in each block's ``se`` slot, after the last
norm of the residual branch.  timm is not imported here.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch
import torch.nn as nn

__all__ = ["timm_attn", "TimmAttn"]


class TimmAttn:
    """A picklable factory ``(channels, device=None, dtype=None) -> module`` for timm's attention arguments.

    Built by :func:`timm_attn`.  Host keywords other than ``device`` / ``dtype`` raise ``TypeError`` unless
    listed in ``ignore`` (timm probes ``se_layer(8, rd_ratio=1.0)`` and catches that ``TypeError``).  The
    module is built at each call, at the width timm asks for; arguments that do not fit that width raise
    ``ValueError`` naming the factory and the width.
    """

    def __init__(self, name: str, ignore: Iterable[str] = (), **kwargs: Any) -> None:
        from ..registry import info

        # Now, before timm builds anything: the name (ValueError with close matches), the keyword names (TypeError,
        # by binding them to the signature) and the layout and size rule, none of which depends on the width.
        # The module itself is built only when timm calls the factory with a block's real width: many modules
        # accept only some widths (EMA: a multiple of factor=32; FcaNet: of its 16 frequencies), so no
        # stand-in width can test the arguments.
        entry = info(name)  # a registry name, class name or alias (attnzoo.names): kept as the registry name
        entry.require_same_shape_nchw("timm_attn", None, **kwargs)
        if isinstance(ignore, str):
            raise ValueError(f"timm_attn: ignore must be a list of keyword names, got the string {ignore!r}")
        self.name = entry.name
        self.ignore = tuple(ignore)
        self.kwargs = dict(kwargs)

    def __call__(
        self,
        channels: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        **host_kwargs: Any,
    ) -> nn.Module:
        unknown = sorted(set(host_kwargs) - set(self.ignore))
        if unknown:
            raise TypeError(
                f"timm_attn({self.name!r}) got host keyword(s) {unknown} it does not use; pass "
                f"timm_attn({self.name!r}, ignore={unknown!r}) to drop them"
            )
        from ..registry import create, info

        info(self.name).require_same_shape_nchw("timm_attn", channels, **self.kwargs)
        try:
            module = create(self.name, channels, **self.kwargs)
        except ValueError as e:  # the arguments do not fit this block's width: say which factory and width
            raise ValueError(f"{self!r} for a {channels}-channel block of the host: {e}") from e
        if device is not None or dtype is not None:
            module = module.to(device=device, dtype=dtype)
        return module

    def __repr__(self) -> str:
        args = "".join(f", {k}={v!r}" for k, v in self.kwargs.items())
        ignore = f", ignore={list(self.ignore)!r}" if self.ignore else ""
        return f"timm_attn({self.name!r}{ignore}{args})"


def timm_attn(name: str, *, ignore: Iterable[str] = (), **kwargs: Any) -> TimmAttn:
    """An attnzoo module usable wherever timm takes an attention layer class.

    Args:
        name: a registered module that maps one B×C×H×W map to a map of the same shape with these ``kwargs``
            (``"eca"``, ``"cbam"``, ``"coord"``, ...; checked here and again for the channels timm asks for).
        ignore: host keywords to accept and drop, e.g. ``("act_layer",)`` for EfficientNet's ``se_layer``.
        **kwargs: module arguments, e.g. ``timm_attn("cbam", kernel_size=3)``.

    Examples::

        timm.create_model("resnet26d", block_args=dict(attn_layer=attnzoo.timm_attn("eca")))
        timm.create_model("efficientnet_b0", se_layer=attnzoo.timm_attn("eca", ignore=["act_layer"]))
    """
    return TimmAttn(name, ignore=ignore, **kwargs)
