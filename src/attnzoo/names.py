"""People's names for registered modules: one resolution for :func:`attnzoo.info`, :func:`attnzoo.create`,
``insert``, ``timm_attn`` and the YOLO helpers.

A name resolves, case-insensitively and ignoring ``-``, ``_`` and spaces, to a registry name when it is a
registry name (``"ema"``, ``"EMA"``), an exported class name (``"EfficientChannelAttention"``) or one of the
community aliases in :data:`ALIASES` (``"CA"`` is Coordinate Attention).  Registry names stay the canonical
names (:func:`attnzoo.list_modules` lists them); docs/names.md has the table of aliases.
"""

from __future__ import annotations

import difflib
import re
from typing import Mapping

__all__ = ["ALIASES", "resolve", "unknown_name_error"]

#: Community names of modules that are neither their registry name nor their class name, each used in papers
#: or popular repositories for one module only.  "SA" is SA-Net's Shuffle Attention (as in the YOLO community
#: repositories), not spatial attention in general; "PSA" is left to the registry name of YOLOv10's block
#: (Polarized Self-Attention is "polarized").
ALIASES: Mapping[str, str] = {
    "CA": "coord",
    "CoordAtt": "coord",
    "SA": "shuffle_attention",
    "SA-Net": "shuffle_attention",
    "SENet": "se",
    "SEBlock": "se",
    "ECA-Net": "eca",
    "SKNet": "sk",
    "GCNet": "gc",
    "FcaNet": "fca",
    "NL": "nonlocal",
    "CCNet": "criss_cross",
    "A2Net": "double_attention",
    "CoTNet": "cot",
    "HaloNet": "halo",
    "VOLO": "outlook",
    "NAT": "neighborhood",
    "DAT": "deformable_attention",
    "BiFormer": "bra",
    "SHViT": "shsa",
}


def _key(name: str) -> str:
    return re.sub(r"[\s_\-]", "", name).casefold()


def _names(registry: Mapping[str, object]) -> dict[str, set[str]]:
    """normalised name -> registry names it may mean (registry names, class names, aliases)."""
    table: dict[str, set[str]] = {}
    for reg, entry in registry.items():
        table.setdefault(_key(reg), set()).add(reg)
        table.setdefault(_key(getattr(entry, "cls").__name__), set()).add(reg)
    for alias, reg in ALIASES.items():
        if reg in registry:
            table.setdefault(_key(alias), set()).add(reg)
    return table


def resolve(name: object, registry: Mapping[str, object]) -> str:
    """The registry name ``name`` means; ``ValueError`` (with close matches among registry names, class names
    and aliases) when it means none or several."""
    if isinstance(name, str) and name in registry:
        return name
    if isinstance(name, str):
        meant = _names(registry).get(_key(name), set())
        if len(meant) == 1:
            return next(iter(meant))
        if meant:
            raise ValueError(f"attnzoo module name {name!r} is ambiguous: it may mean {sorted(meant)}; use one of them")
    raise unknown_name_error(name, registry)


def unknown_name_error(name: object, registry: Mapping[str, object]) -> ValueError:
    spelled: dict[str, str] = {}  # the ways a person writes a name -> registry name
    for reg, entry in registry.items():
        spelled[reg] = reg
        spelled.setdefault(getattr(entry, "cls").__name__, reg)
    for alias, reg in ALIASES.items():
        if reg in registry:
            spelled.setdefault(alias, reg)
    lower: dict[str, str] = {}
    for s in spelled:  # registry names first: 'carafe', not its class name 'CARAFE'
        lower.setdefault(s.lower(), s)
    close = difflib.get_close_matches(str(name).lower(), list(lower), n=5, cutoff=0.4)
    shown = [
        repr(lower[c]) if spelled[lower[c]] == lower[c] else f"{lower[c]!r} ({spelled[lower[c]]!r})" for c in close
    ]
    hint = f"; did you mean {', '.join(shown)}?" if shown else ""
    return ValueError(f"unknown attnzoo module {name!r}{hint} (attnzoo.list_modules() lists all {len(registry)})")
