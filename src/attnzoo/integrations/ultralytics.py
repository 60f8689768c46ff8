"""Ultralytics YOLO: attnzoo modules in a model YAML.

Ultralytics' ``parse_model`` resolves a YAML module name in the namespace of ``ultralytics.nn.tasks``.
:func:`register` adds attnzoo's classes there under their exported class names and wraps ``parse_model``
(in memory, at ``register()`` time: the installed files are never edited) so that four kinds of rows work:

- ``nchw`` gates / attention: ``[-1, 1, CBAM, [c2]]``, args passed through as written (``c2`` = the previous
  row's width-scaled channels); output channels = the input's (parse_model's own rule).
- ``multi`` / ``pair`` fusion: ``[[-1, 6], 1, WeightedFusion, []]``; channels filled in; output = the inputs'.
- ``resample``: one map in, a map whose shape the module's registered :class:`attnzoo.ShapeRule` may change
  (``dysample``, ``carafe``, ``spd_conv``, ``sk``, ``dcnv2``, modules with ``out_channels``):
  ``[-1, 1, DySample, [2]]`` for ``nn.Upsample`` (output = the input's channels) or ``[-1, 1, SPDConv, [256]]``
  for a strided ``Conv`` (``out_channels`` scaled like a ``Conv``'s c2).
- ``pyramid`` necks: ``[[4, 6, 10], 1, PathAggregationNetwork, [256]]`` outputs the list of levels;
  ``[11, 1, Select, [i]]`` passes on level i with its channels (to later rows and ``Detect``).
- host blocks (``PSA``, ``C2PSA``, ``A2C2f``, ``AIFI``), written exactly like Ultralytics' own row of the same
  block plus an optional trailing dict of attnzoo keywords: ``[-1, 2, AzC2PSA, [1024, {attn: ema}]]``.  Their
  class names are Ultralytics' too, so they are registered under a prefix (``register(prefix="Az")``; without
  one they are skipped silently and the YAML names keep meaning Ultralytics' blocks).  ``parse_model`` sizes the
  row through Ultralytics' block (width, ``max_channels``, depth-scaled repeats), and attnzoo's block is built
  with the sizes read from it.

Every row module gets the attributes ``i``, ``f``, ``type`` and ``np`` (its index, ``from``, type name and
parameter count, set by ``parse_model``).  A module that uses one of those names itself (focal_modulation's child
``f``, FocalNet's name) is held in a :class:`ModuleRow`, which takes them instead: its keys in the model's state
dict gain a ``module.`` (``model.5.module.f.weight``), its own keys stay, and ``attnzoo.capture_attention`` names
its maps ``model.5.module``.

How the wrapper works (see docs/integrations.md): the rows of the last three kinds are rewritten into
stand-in rows that ``parse_model`` itself knows how to count (a ``Concat`` of one earlier row has that row's
channels; a ``Conv`` row has ``c2`` scaled by the width multiple and capped by ``max_channels``), a last
row records ``parse_model``'s channel list, and afterwards every stand-in is replaced by the attnzoo module
built with the recorded input channels, with the original ``from``.  The attnzoo module is then run once on a
tiny input to check that its real output channels are the ones ``parse_model`` assumed (when they are
another input's, the stand-in is corrected and the model parsed again; otherwise a ``ValueError`` names the
row).  ``parse_model``'s own arithmetic (width, ``max_channels``, rounding) is used throughout, never
re-implemented.  A YAML without such rows goes to the original ``parse_model`` untouched.

Checkpoints pickle the model, so attnzoo must be importable where a trained ``.pt`` is loaded
(``register()`` is needed to parse YAML, which includes training from a ``.pt``: the trainer rebuilds the
model from the YAML stored in it); ONNX exports do not depend on attnzoo.

ultralytics is AGPL-3.0: this file only calls it at run time and contains none of its code.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any, Iterable, Sequence

from .yolo_layers import ModuleRow, PairInputs, Select, row_kind, yaml_class
from .yolo_rows import _REWRITTEN, _REWRITTEN_KINDS, _SELECT, _install, row_name_error

__all__ = ["register", "yaml_modules", "row_kind", "insert_layers", "save_yaml", "Select", "PairInputs", "ModuleRow"]


def yaml_modules(prefix: str = "") -> dict[str, type]:
    """The YAML names :func:`register` would add for registry modules: ``prefix + class name`` for every module
    whose :func:`row_kind` is not empty (layouts ``nchw``, ``multi``, ``pair``, ``pair_same``, ``pyramid``), with
    the class it builds (:func:`yaml_class`)."""
    from ..registry import entries

    return {prefix + e.cls.__name__: yaml_class(e) for e in entries() if row_kind(e)}


def register(prefix: str = "", names: Iterable[str] | None = None, overwrite: bool = False) -> dict[str, type]:
    """Make attnzoo modules usable in Ultralytics model YAML files (call before ``YOLO("model.yaml")``).

    Args:
        prefix: prepended to every YAML name (``prefix="Az"`` gives ``AzCBAM``, ``AzSelect``) to avoid clashes.
        names: registry names (``["cbam", "panet"]``) to register; default every module a YAML can use.
        overwrite: replace a different object that already has the name in ``ultralytics.nn.tasks``.

    Also registers :class:`Select` (when registering everything or a ``pyramid`` module) and, once per
    process, wraps ``ultralytics.nn.tasks.parse_model`` so that rows of ``multi`` / ``pair`` / ``pyramid`` /
    ``resample`` modules and ``Select`` rows work (module docstring; a YAML without such rows is parsed by
    the original function untouched).  A name that already means something else in ``ultralytics.nn.tasks``
    is skipped with a warning when registering everything, and raises ``ValueError`` when asked for by
    ``names`` (unless ``overwrite``).  Registration is per process and idempotent.

    Returns:
        ``{YAML name: class}`` of what is now registered.
    """
    if not isinstance(prefix, str) or (prefix and not prefix.isidentifier()):
        raise ValueError(f"register: prefix must be a Python identifier or '', got {prefix!r}")
    import ultralytics.nn.tasks as tasks

    from ..registry import info

    entries: dict[str, Any] = {}
    if names is None:
        from ..registry import entries as registered

        for entry in registered():
            if row_kind(entry):
                entries[prefix + entry.cls.__name__] = entry
        explicit = False
    else:
        if isinstance(names, str):
            names = [names]
        for name in names:
            entry = info(name)
            if not row_kind(entry):
                raise ValueError(
                    f"register: module {name!r} must take B×C×H×W maps (layout 'nchw', 'multi', 'pair', "
                    f"'pair_same' or 'pyramid') to be used in a YOLO YAML, got layout {entry.layout!r}"
                )
            entries[prefix + entry.cls.__name__] = entry
        explicit = True
    wanted: dict[str, tuple[type, Any]] = {k: (yaml_class(e), e) for k, e in entries.items()}
    if not explicit or any(row_kind(e) == "pyramid" for e in entries.values()):
        wanted[prefix + "Select"] = (Select, _SELECT)

    _install(tasks)
    done: dict[str, type] = {}
    clashes: list[str] = []
    for yaml_name, (cls, entry) in wanted.items():
        existing = tasks.__dict__.get(yaml_name)
        if existing is not None and existing is not cls and not overwrite:
            if explicit:
                raise ValueError(
                    f"register: {yaml_name!r} already names {existing!r} in ultralytics.nn.tasks; use prefix= or "
                    f"overwrite=True"
                )
            if not (entry is not _SELECT and row_kind(entry) == "host" and yaml_name == entry.cls.__name__):
                clashes.append(yaml_name)  # (a host block shares its name with Ultralytics' own: use a prefix)
            continue
        setattr(tasks, yaml_name, cls)
        if entry is _SELECT or row_kind(entry) in _REWRITTEN_KINDS:
            _REWRITTEN[yaml_name] = entry
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
        error = row_name_error(module, f"insert_layers: row after {after}")
        if error is not None:
            raise error
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
    """Write a model config dict (e.g. from :func:`insert_layers`) as YAML in the style of Ultralytics' own files:
    one ``- [from, repeats, module, args]`` line per row, with its index as a comment; returns the path."""
    import yaml

    def flow(value: object) -> str:
        return yaml.safe_dump(value, default_flow_style=True, width=float("inf")).strip().removesuffix("\n...")

    path = Path(path)
    clean = {k: v for k, v in cfg.items() if k not in ("yaml_file", "scale", "ch")}
    lines, index = [], 0
    for key, value in clean.items():
        if key in ("backbone", "head") and isinstance(value, list):
            lines += [f"{key}:", "  # [from, repeats, module, args]"]
            for row in value:
                lines.append(f"  - {flow(list(row))} # {index}")
                index += 1
        elif isinstance(value, (dict, list)):  # scales: one flow-style line per scale
            lines.append(yaml.safe_dump({key: value}, sort_keys=False, default_flow_style=None).rstrip())
        else:
            lines.append(f"{key}: {flow(value)}")
    path.write_text("\n".join(lines) + "\n")
    return path
