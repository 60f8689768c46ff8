"""The host rows of the YOLO YAML machinery (:mod:`attnzoo.integrations.yolo_rows`): attnzoo's host blocks (PSA,
C2PSA, A2C2f, AIFI) written like Ultralytics' own row, checked, then built with the sizes ``parse_model`` gave the
Ultralytics block that stood in for them.

ultralytics is AGPL-3.0: this file only reads its built layers at run time and contains none of its code.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch.nn as nn

__all__: list[str] = []

#: attnzoo's host blocks -> the Ultralytics block whose YAML row they read like: the same arguments (sized and
#: depth-scaled by parse_model through that block), plus an optional trailing dict of attnzoo keywords
#: (``{attn: ema}``).
_HOSTS = {"psa": "PSA", "c2psa": "C2PSA", "a2c2f": "A2C2f", "aifi": "AIFI"}


def check_host_row(entry: Any, inputs: list[int], kwargs: dict, where: str) -> None:
    """A host row takes one ``from`` row, and its trailing dict only keywords of the host block ``entry.cls``."""
    if len(inputs) != 1:
        raise ValueError(f"{where}: a host block takes one row as 'from'")
    params = inspect.signature(entry.cls).parameters
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise ValueError(f"{where}: {entry.cls.__name__} has no argument(s) {unknown}; accepted: {list(params)[1:]}")


def _ratio(part: int, whole: int) -> float:
    """A ratio r with ``int(whole · r) == part`` (the exact quotient when it survives float rounding)."""
    r = part / whole
    return r if int(whole * r) == part else (part + 0.5) / whole


def _sizes(name: str, stand_in: Any, where: str) -> tuple[int, dict]:
    """The input channels and the size arguments of the host block ``name``, read from the layers of the
    Ultralytics block ``stand_in`` that parse_model built for its row."""
    try:
        if name in ("psa", "c2psa"):
            c1, c = stand_in.cv1.conv.in_channels, stand_in.cv1.conv.out_channels // 2
            sizes: dict = {"expansion": _ratio(c, c1)}
            if name == "c2psa":
                sizes["num_repeats"] = len(stand_in.m)
        elif name == "a2c2f":
            c1, c, c2 = stand_in.cv1.conv.in_channels, stand_in.cv1.conv.out_channels, stand_in.cv2.conv.out_channels
            block: Any = stand_in.m[0][0] if isinstance(stand_in.m[0], nn.Sequential) else None
            if block is None or not hasattr(block, "attn"):
                raise ValueError(
                    f"{where}: this row has no area attention (a2=False builds C3k blocks); keep Ultralytics' "
                    f"A2C2f for it"
                )
            sizes = {
                "out_channels": c2,
                "num_repeats": len(stand_in.m),
                "area": block.attn.area,
                "residual": getattr(stand_in, "gamma", None) is not None,
                "mlp_ratio": _ratio(block.mlp[0].conv.out_channels, c),
                "expansion": _ratio(c, c2),
            }
        else:  # aifi
            c1 = stand_in.fc1.in_features
            sizes = {"dim_feedforward": stand_in.fc1.out_features, "heads": stand_in.ma.num_heads}
    except AttributeError as e:
        import ultralytics

        raise RuntimeError(
            f"{where}: could not read the sizes of ultralytics {ultralytics.__version__}'s "
            f"{_HOSTS[name]} ({e}); tested with 8.4.190"
        ) from e
    return c1, sizes


def build_host(entry: Any, row_kwargs: dict, stand_in: Any, where: str) -> tuple[nn.Module, str]:
    """attnzoo's host block ``entry`` with the sizes parse_model gave the Ultralytics block it stood in for (read
    from that block's layers), plus the row's attnzoo keywords; and its arguments as shown in the layer table."""
    c1, sizes = _sizes(entry.name, stand_in, where)
    kwargs = {**sizes, **row_kwargs}
    shown = ", ".join([repr(c1), *(f"{k}={v!r}" for k, v in kwargs.items())])
    try:
        return entry.cls(c1, **kwargs), shown
    except (ValueError, TypeError) as e:
        raise ValueError(f"{where} with input channels {c1}: {e}") from e
