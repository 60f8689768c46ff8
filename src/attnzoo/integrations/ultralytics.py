"""Ultralytics YOLO: attnzoo modules in a model YAML.

Ultralytics' ``parse_model`` resolves a YAML module name in the namespace of ``ultralytics.nn.tasks``.
:func:`register` adds attnzoo's ``nchw`` classes there under their exported class names, so a YAML row
such as ::

    - [-1, 1, CBAM, [c2]]               # [from, repeats, module, args]

builds ``attnzoo.CBAM(c2)``.  How the channels get there: ``parse_model`` passes the args of a module it does
not know through unchanged (positional only — YAML has no keywords) and assumes the module keeps the channel
count (``c2 = ch[f]``).  The string ``c2`` is replaced by the value of ``parse_model``'s local variable
``c2``: the previous row's output channels, already scaled by the model's width multiple (32 at scale ``n``,
64 at ``s`` for a 128-channel row).  So ``c2`` is right only when ``from`` is ``-1``; a literal number only
fits one scale.  This relies on an implementation detail of ``parse_model`` (tested against ultralytics
8.4.190 by ``tests/test_ultralytics.py``).  Further arguments follow the class's signature in order, e.g.
``[-1, 1, CBAM, [c2, 16, 3]]`` is ``CBAM(c2, reduction=16, kernel_size=3)``.

Limits (of ``parse_model``, without editing it): single input only (``from`` must be one index), output
channels must equal input channels, so the pyramid fusion necks (``fpn``, ``panet``, ``asff``) and the
``pair`` / ``tokens`` / ``temporal`` modules are not registered.  Checkpoints pickle the model, so attnzoo
must be importable where a trained ``.pt`` is loaded (``register()`` is only needed to parse YAML); ONNX
exports do not depend on attnzoo.

ultralytics is AGPL-3.0: this file only calls it at run time and contains none of its code.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any, Iterable, Sequence

__all__ = ["register", "yaml_modules", "insert_layers", "save_yaml"]


def yaml_modules(prefix: str = "") -> dict[str, type]:
    """The YAML names :func:`register` would add: ``prefix + class name`` for every ``nchw`` module."""
    from ..registry import _REGISTRY

    return {prefix + e.cls.__name__: e.cls for _, e in sorted(_REGISTRY.items()) if e.layout == "nchw"}


def register(prefix: str = "", names: Iterable[str] | None = None, overwrite: bool = False) -> dict[str, type]:
    """Make attnzoo modules usable in Ultralytics model YAML files (call before ``YOLO("model.yaml")``).

    Args:
        prefix: prepended to every YAML name (``prefix="Az"`` gives ``AzCBAM``) to avoid clashes.
        names: registry names (``["cbam", "eca"]``) to register; default every ``nchw`` module.
        overwrite: replace a different object that already has the name in ``ultralytics.nn.tasks``.

    A name that already means something else in ``ultralytics.nn.tasks`` is skipped with a warning when
    registering everything, and raises ``ValueError`` when asked for by ``names`` (unless ``overwrite``).
    Registration is per process and idempotent.

    Returns:
        ``{YAML name: class}`` of what is now registered.
    """
    if not isinstance(prefix, str) or (prefix and not prefix.isidentifier()):
        raise ValueError(f"register: prefix must be a Python identifier or '', got {prefix!r}")
    import ultralytics.nn.tasks as tasks

    from ..registry import info

    if names is None:
        wanted = yaml_modules(prefix)
        explicit = False
    else:
        if isinstance(names, str):
            names = [names]
        wanted = {}
        for name in names:
            entry = info(name)
            if entry.layout != "nchw":
                raise ValueError(
                    f"register: module {name!r} must have layout 'nchw' (one B×C×H×W input, same channels out) "
                    f"to be used in a YOLO YAML, got {entry.layout!r}"
                )
            wanted[prefix + entry.cls.__name__] = entry.cls
        explicit = True

    done: dict[str, type] = {}
    clashes: list[str] = []
    for yaml_name, cls in wanted.items():
        existing = tasks.__dict__.get(yaml_name)
        if existing is not None and existing is not cls and not overwrite:
            if explicit:
                raise ValueError(
                    f"register: {yaml_name!r} already names {existing!r} in ultralytics.nn.tasks; use prefix= or "
                    f"overwrite=True"
                )
            clashes.append(yaml_name)
            continue
        setattr(tasks, yaml_name, cls)
        done[yaml_name] = cls
    if clashes:
        warnings.warn(
            f"attnzoo.integrations.ultralytics.register: skipped {clashes}: these names already exist in "
            f"ultralytics.nn.tasks; register(prefix=...) registers them under prefixed names",
            stacklevel=2,
        )
    return done


def _load_cfg(cfg: str | Path | dict) -> dict:
    if isinstance(cfg, dict):
        return copy.deepcopy(cfg)
    from ultralytics.nn.tasks import yaml_model_load

    return yaml_model_load(cfg)  # resolves the built-in names, e.g. "yolo11n.yaml", and guesses the scale


def insert_layers(cfg: str | Path | dict, layers: Sequence[tuple[int, str, list]]) -> dict:
    """A copy of a YOLO model config with extra single-input rows inserted, every ``from`` index renumbered.

    Args:
        cfg: a model YAML path, a built-in name (``"yolo11n.yaml"``) or a config dict.
        layers: ``(after, module, args)`` triples: insert the row ``[-1, 1, module, args]`` right after the
            row with index ``after`` (indices of the original config; several rows after the same index are
            chained in order).

    The inserted row takes the output of row ``after``, and every later reference to row ``after`` (the next
    row's ``-1``, a ``Concat`` or ``Detect`` index) now points to the inserted row instead, so the attention
    sits in the feature path.  Use :func:`save_yaml` to write the result; name the file after the scale
    (``yolo11n-cbam.yaml``), as Ultralytics reads the scale from the file name.
    """
    cfg = _load_cfg(cfg)
    backbone, head = list(cfg["backbone"]), list(cfg.get("head", []))
    rows = backbone + head
    n = len(rows)
    extra: dict[int, list[list[Any]]] = {}
    for item in layers:
        if not (isinstance(item, (tuple, list)) and len(item) == 3):
            raise ValueError(f"insert_layers: each layer must be (after, module, args), got {item!r}")
        after, module, args = item
        if not isinstance(after, int) or not 0 <= after < n:
            raise ValueError(f"insert_layers: after must be a row index in [0, {n - 1}], got {after!r}")
        if not isinstance(module, str) or not isinstance(args, (list, tuple)):
            raise ValueError(f"insert_layers: module must be a name and args a list, got {module!r}, {args!r}")
        extra.setdefault(after, []).append([-1, 1, module, list(args)])

    new_index, out_index, pos = [], [], 0
    for i in range(n):
        new_index.append(pos)
        pos += 1 + len(extra.get(i, []))
        out_index.append(pos - 1)  # the last row that now stands for row i's output

    def remap(f: Any, k: int) -> Any:
        if isinstance(f, list):
            return [remap(x, k) for x in f]
        target = f if f >= 0 else k + f
        if not 0 <= target < n:
            return f  # leave anything unusual to parse_model
        return out_index[target] if f >= 0 else out_index[target] - new_index[k]

    new_rows = []
    for k, row in enumerate(rows):
        row = list(row)
        row[0] = remap(row[0], k)
        new_rows.append(row)
        new_rows.extend(copy.deepcopy(extra.get(k, [])))
    split = out_index[len(backbone) - 1] + 1 if backbone else 0
    cfg["backbone"], cfg["head"] = new_rows[:split], new_rows[split:]
    return cfg


def save_yaml(cfg: dict, path: str | Path) -> Path:
    """Write a model config dict (e.g. from :func:`insert_layers`) as YAML; returns the path."""
    import yaml

    path = Path(path)
    clean = {k: v for k, v in cfg.items() if k not in ("yaml_file", "scale", "ch")}
    path.write_text(yaml.safe_dump(clean, sort_keys=False, default_flow_style=None))
    return path
