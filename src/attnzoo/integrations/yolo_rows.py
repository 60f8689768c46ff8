"""The YAML-row machinery behind :func:`attnzoo.integrations.ultralytics.register`: the ``parse_model`` wrapper that plans, stands in for and builds the rows of attnzoo's
multi-input, pyramid and resampling modules (see that module's docstring for the YAML rules).

ultralytics is AGPL-3.0: this file only calls it at run time and contains none of its code.
"""

from __future__ import annotations

import ast
import copy
import functools
import inspect
import sys
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
import torch.nn as nn

from .yolo_hosts import _HOSTS, build_host, check_host_row
from .yolo_layers import ModuleRow, PairInputs, Select, _ChannelRecorder, hold, row_kind, yaml_class

#: kinds of YAML rows an attnzoo module can be (by registry metadata); "nchw" rows are passed through as is
_REWRITTEN_KINDS = ("multi", "pair", "pyramid", "resample", "host")
_RECORDER = "AttnzooChannelRecorder"  # the YAML name of the last, hidden row that records parse_model's channels
_SELECT = "select"
#: YAML name -> ModuleInfo (or _SELECT) of the names whose rows the parse_model wrapper rewrites
_REWRITTEN: dict[str, Any] = {}


# --------------------------------------------------------------------------------------------------------
# The parse_model wrapper
# --------------------------------------------------------------------------------------------------------


def _install(tasks: Any) -> None:
    """Wrap ``tasks.parse_model`` once per process (``DetectionModel`` & co. call it through that global)."""
    setattr(tasks, _RECORDER, _ChannelRecorder)
    current = tasks.parse_model
    if getattr(current, "attnzoo_original", None) is not None:
        return
    original = current

    @functools.wraps(original)
    def parse_model(d: dict, ch: Any, verbose: bool = True, **kwargs: Any) -> Any:
        return _parse_model(functools.partial(original, **kwargs), tasks, d, ch, verbose)

    parse_model.attnzoo_original = original  # type: ignore[attr-defined]
    tasks.parse_model = parse_model
    package: Any = sys.modules.get("ultralytics.nn")
    if package is not None and getattr(package, "parse_model", None) is original:
        package.parse_model = parse_model


@dataclass
class _Row:
    """One rewritten YAML row."""

    index: int
    name: str
    kind: str  # multi, pair, pyramid, resample or select
    f: Any  # the row's ``from`` as written
    inputs: list[int]  # absolute input row indices
    entry: Any = None
    args: list = field(default_factory=list)
    kwargs: dict = field(default_factory=dict)
    out_raw: int | None = None  # out_channels before width scaling (None: the module keeps input channels)
    pick: int = 0  # Select: the element
    repeats: int = 1  # host rows: the YAML n (depth-scaled by parse_model through the stand-in block)
    shown: str = ""  # the arguments the module was built with (for the layer table)


def row_name_error(module: str, where: str, namespace: dict | None = None) -> ValueError | None:
    """attnzoo's error for a row's module written as a name attnzoo resolves (a registry name such as ``"ema"``
    or an alias, :mod:`attnzoo.names`) rather than the class name a YAML row needs; ``None`` for a class name
    or a name attnzoo does not know (Ultralytics' own ``Conv``, ``C3k2``, ...).  ``namespace``: the names
    ``parse_model`` looks up (``ultralytics.nn.tasks``), to say under which name :func:`register` put the class."""
    from ..registry import info

    try:
        entry = info(module)
    except ValueError:
        return None
    cls = entry.cls.__name__
    if module == cls or (namespace is not None and namespace.get(module) in (entry.cls, yaml_class(entry))):
        return None
    if namespace is None:
        use = (
            f"its class name {cls!r}, as attnzoo.integrations.ultralytics.register() adds it "
            f"(with prefix=P: P + {cls!r})"
        )
    else:
        # the class's own name first when register() added it under it (several prefixes may be registered)
        registered = sorted(
            (k for k, v in namespace.items() if v in (entry.cls, yaml_class(entry))), key=lambda k: (k != cls, k)
        )
        use = (
            f"the name register() gave its class: {registered[0]!r}"
            if registered
            else f"its class name {cls!r}, after attnzoo.integrations.ultralytics.register(names=[{entry.name!r}])"
        )
    return ValueError(f"{where}: {module!r} is attnzoo module {entry.name!r}; a YOLO row names a class: write {use}")


def _where(row: _Row) -> str:
    return f"YAML row {row.index} ({row.name}, from {row.f})"


def _resolve_arg(a: Any, d: dict, where: str) -> Any:
    if not isinstance(a, str):
        return a
    if a == "c2":
        raise ValueError(
            f"{where}: drop the 'c2' argument: the channels of this row are filled in from its inputs "
            f"(the YAML args are the module's arguments after channels)"
        )
    if a in d and a not in ("backbone", "head"):
        return d[a]  # e.g. nc
    try:
        return ast.literal_eval(a)
    except (ValueError, SyntaxError):
        return a


def _plan(i: int, row: list, d: dict) -> _Row:
    f, n, name, args = row
    kind = "select" if _REWRITTEN[name] is _SELECT else row_kind(_REWRITTEN[name])
    where = f"YAML row {i} ({name}, from {f})"
    if n != 1 and kind != "host":
        raise ValueError(f"{where}: repeats must be 1 for this row, got {n}")
    froms = f if isinstance(f, (list, tuple)) else [f]
    if not froms or not all(isinstance(x, int) and not isinstance(x, bool) for x in froms):
        raise ValueError(f"{where}: 'from' must be a row index or a list of row indices")
    inputs = [x if x >= 0 else i + x for x in froms]
    if not all(0 <= x < i for x in inputs):
        raise ValueError(f"{where}: 'from' must refer to earlier rows (0..{i - 1}), got {f}")
    args = [_resolve_arg(a, d, where) for a in (args or [])]
    kwargs: dict = {}
    if args and isinstance(args[-1], dict):
        kwargs = dict(args.pop())
    plan = _Row(i, name, kind, f, inputs, args=args, kwargs=kwargs, repeats=n)
    if kind == "select":
        if len(inputs) != 1 or kwargs or len(args) > 1:
            raise ValueError(f"{where}: write [row, 1, Select, [i]]: one 'from' row and the index of its output")
        plan.pick = args[0] if args else 0
        if not isinstance(plan.pick, int) or isinstance(plan.pick, bool):
            raise ValueError(f"{where}: the Select index must be an int, got {plan.pick!r}")
        return plan
    entry = plan.entry = _REWRITTEN[name]
    if kind == "host":
        check_host_row(entry, inputs, kwargs, where)
        return plan
    need = {"multi": (2, None), "pair": (2, None), "pyramid": (2, None), "resample": (1, 1)}[kind]
    if len(inputs) < need[0] or (need[1] is not None and len(inputs) > need[1]):
        wanted = "one row" if need[1] == 1 else "a list of at least 2 rows"
        raise ValueError(f"{where}: a {kind} module takes {wanted} as 'from'")
    sig = inspect.signature(entry.cls)
    try:
        sig.bind(None, *args, **kwargs)
    except TypeError as e:
        raise ValueError(f"{where}: the args {args} {kwargs or ''} do not fit {entry.cls.__name__}{sig}: {e}") from None
    params = sig.parameters
    if "out_channels" in params:
        bound = sig.bind(None, *args, **kwargs).arguments
        raw = bound.get("out_channels", params["out_channels"].default)
        if raw is not None and raw is not inspect.Parameter.empty:
            if not isinstance(raw, int) or isinstance(raw, bool) or raw < 1:
                raise ValueError(f"{where}: out_channels must be a positive int (scaled like a Conv's c2), got {raw!r}")
            plan.out_raw = raw
    return plan


def _stand_in(rule: tuple, plan: _Row) -> list:
    """A row parse_model counts by itself: ("conv", c) -> c scaled like a Conv's c2; ("row", j) -> row j's channels;
    ("concat", rows) -> the sum of those rows' channels;
    ("host",) -> the Ultralytics block the host row reads like, with the row's own arguments."""
    if rule[0] == "host":
        return [plan.f, plan.repeats, _HOSTS[plan.entry.name], list(plan.args)]
    if rule[0] == "conv":
        return [plan.inputs[0], 1, "Conv", [rule[1]]]
    if rule[0] == "concat":
        return [list(rule[1]), 1, "Concat", [1]]
    return [[rule[1]], 1, "Concat", [1]]


def _own_rule(plan: _Row, overrides: dict) -> tuple:
    if (plan.index, None) in overrides:
        return overrides[(plan.index, None)]
    if plan.kind == "host":
        return ("host",)
    return ("conv", plan.out_raw) if plan.out_raw is not None else ("row", plan.inputs[0])


def _output_rule(neck: _Row, j: int, overrides: dict) -> tuple:
    if (neck.index, j) in overrides:
        return overrides[(neck.index, j)]
    if neck.out_raw is not None:
        return ("row", neck.index)  # every level has out_channels (scaled), the neck row's own count
    k = j if -len(neck.inputs) <= j < len(neck.inputs) else -1
    return ("row", neck.inputs[k])  # a neck without out_channels keeps each level's channels


def _probe(module: nn.Module, plan: _Row, in_ch: list[int]) -> Any:
    """Output channels of ``module`` on a tiny input: an int (one map) or a list (one per element)."""
    side = max(8, *plan.entry.min_size)
    gen = torch.Generator().manual_seed(0)
    if plan.kind == "pyramid":
        from ..layouts import pyramid_sizes

        sizes = pyramid_sizes((side * 2 ** (len(in_ch) - 1),) * 2, len(in_ch))
        inputs: tuple = ([torch.randn(1, c, h, w, generator=gen) for c, (h, w) in zip(in_ch, sizes)],)
    else:
        sizes = [(side, side)] * len(in_ch)
        if plan.kind == "pair":  # the context at the size the layout gives it (half the map's for layout pair)
            from ..layouts import layout_of

            example = layout_of(plan.entry.name).example_inputs(1, 1, (side, side), torch.zeros)
            sizes[1:] = [tuple(example[1].shape[2:])] * (len(in_ch) - 1)
        maps = [torch.randn(1, c, h, w, generator=gen) for c, (h, w) in zip(in_ch, sizes)]
        if plan.kind == "multi":
            inputs = (maps,)
        elif plan.kind == "pair":
            inputs = (maps[0], maps[1]) if len(maps) == 2 else (maps[0], maps[1:])
        else:
            inputs = (maps[0],)
    training = module.training
    module.eval()
    try:
        with torch.no_grad():
            y = module(*inputs)
    except Exception as e:  # re-raised with the row
        raise ValueError(f"{_where(plan)}: a test forward with input channels {in_ch} failed: {e}") from e
    finally:
        module.train(training)
    if isinstance(y, torch.Tensor):
        return int(y.shape[1])
    if isinstance(y, dict):
        y = list(y.values())
    if isinstance(y, (list, tuple)) and all(isinstance(t, torch.Tensor) and t.dim() == 4 for t in y):
        return [int(t.shape[1]) for t in y]
    raise ValueError(f"{_where(plan)}: the module must return a B×C×H×W map or a list of them, got {type(y).__name__}")


def _construct(plan: _Row, in_ch: list[int], own: int) -> nn.Module:
    cls = plan.entry.cls
    sig = inspect.signature(cls)
    params = sig.parameters
    if plan.kind == "multi" and len(set(in_ch)) != 1:
        raise ValueError(
            f"{_where(plan)}: {cls.__name__} fuses maps of one shape, but the inputs (rows {plan.inputs}) have "
            f"{in_ch} channels; add a Conv row to bring them to one width"
        )
    channels: Any = list(in_ch) if plan.kind == "pyramid" else in_ch[0]
    bound = sig.bind(channels, *plan.args, **plan.kwargs)
    if plan.kind == "multi" and "num_inputs" in params and "num_inputs" not in bound.arguments:
        bound.arguments["num_inputs"] = len(in_ch)
    if plan.kind == "pair" and "context_channels" in params and "context_channels" not in bound.arguments:
        bound.arguments["context_channels"] = in_ch[1] if len(in_ch) == 2 else in_ch[1:]
    if plan.out_raw is not None:
        bound.arguments["out_channels"] = own  # the width-scaled value parse_model gave the stand-in Conv
    plan.shown = ", ".join([*map(repr, bound.args), *(f"{k}={v!r}" for k, v in bound.kwargs.items())])
    try:
        return cls(*bound.args, **bound.kwargs)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{_where(plan)} with input channels {in_ch}: {e}") from e


def _match(want: int, chs: list, candidates: Sequence[int], plan: _Row, what: str) -> tuple:
    for x in candidates:
        if chs[x] == want:
            return ("row", x)
    if len(plan.inputs) > 1 and sum(chs[x] for x in plan.inputs) == want:  # e.g. TFE: the inputs concatenated
        return ("concat", tuple(plan.inputs))
    raise ValueError(
        f"{_where(plan)}: {what} has {want} channels, which is neither its out_channels (width-scaled) nor the "
        f"channels of one of its inputs nor their sum ({[chs[x] for x in plan.inputs]}), so the rows after it cannot be sized"
    )


def _build(
    plans: dict[int, _Row], chs: list, overrides: dict, layers: list | None = None
) -> tuple[dict[int, nn.Module], dict | None]:
    """Build the attnzoo modules from parse_model's channel list; or return the stand-in corrections needed."""
    built: dict[int, nn.Module] = {}
    outputs: dict[int, list[int]] = {}
    for i, plan in sorted(plans.items()):
        if plan.kind == "select":
            t = plan.inputs[0]
            if t not in outputs:
                raise ValueError(
                    f"{_where(plan)}: Select picks an element of a row that outputs a list (an attnzoo pyramid neck); row {t} does not"
                )
            n = len(outputs[t])
            if not -n <= plan.pick < n:
                raise ValueError(f"{_where(plan)}: row {t} outputs {n} maps, index {plan.pick} is out of range")
            want = outputs[t][plan.pick]
            if chs[i] != want:
                neck = plans[t]
                fix = _match(
                    want,
                    chs,
                    ([neck.inputs[plan.pick % n]] if plan.pick % n < len(neck.inputs) else []) + list(neck.inputs),
                    neck,
                    f"output {plan.pick}",
                )
                return built, {(t, plan.pick % n): fix, (t, plan.pick): fix}
            built[i] = Select(plan.pick)
            continue
        in_ch = [chs[x] for x in plan.inputs]
        if plan.kind == "host":
            assert layers is not None
            built[i], plan.shown = build_host(plan.entry, plan.kwargs, layers[i], _where(plan))
            continue
        module = _construct(plan, in_ch, chs[i])
        out = _probe(module, plan, in_ch)
        if isinstance(out, int):
            if out != chs[i]:
                return built, {(i, None): _match(out, chs, plan.inputs, plan, "its output")}
        elif plan.kind == "pyramid":
            outputs[i] = out
        else:
            raise ValueError(f"{_where(plan)}: a {plan.kind} module must return one B×C×H×W map")
        built[i] = PairInputs(module) if plan.kind == "pair" else module
    return built, None


def _parse_model(original: Any, tasks: Any, d: dict, ch: Any, verbose: bool) -> Any:
    rows = [list(r) for r in list(d["backbone"]) + list(d["head"])]
    for i, r in enumerate(rows):  # attnzoo's error, not parse_model's KeyError, for "ema" instead of its class
        if len(r) == 4 and isinstance(r[2], str) and "." not in r[2] and r[2] not in tasks.__dict__:
            error = row_name_error(r[2], f"YAML row {i} ({r[2]}, from {r[0]})", tasks.__dict__)
            if error is not None:
                raise error
    rewritten = {
        i
        for i, r in enumerate(rows)
        if len(r) == 4
        and isinstance(r[2], str)
        and r[2] in _REWRITTEN
        and tasks.__dict__.get(r[2]) is (Select if _REWRITTEN[r[2]] is _SELECT else yaml_class(_REWRITTEN[r[2]]))
    }
    if not rewritten:
        return original(d, ch, verbose=verbose)
    plans = {i: _plan(i, rows[i], d) for i in sorted(rewritten)}
    for plan in plans.values():
        t = plan.inputs[0]
        if plan.kind == "select" and (t not in plans or plans[t].kind != "pyramid"):
            raise ValueError(
                f"{_where(plan)}: Select picks an element of a row that outputs a list (an attnzoo pyramid "
                f"neck); row {t} ({rows[t][2]}) does not"
            )
    n_back = len(d["backbone"])
    overrides: dict = {}
    for _ in range(2 * len(plans) + 2):
        new_rows = []
        for i, row in enumerate(rows):
            row_plan = plans.get(i)
            if row_plan is None:
                new_rows.append(copy.deepcopy(row))
            elif row_plan.kind == "select":
                new_rows.append(
                    _stand_in(
                        _output_rule(plans[row_plan.inputs[0]], row_plan.pick, overrides), plans[row_plan.inputs[0]]
                    )
                )
            else:
                new_rows.append(_stand_in(_own_rule(row_plan, overrides), row_plan))
        dd = {k: copy.deepcopy(v) for k, v in d.items() if k not in ("backbone", "head")}
        dd["backbone"] = new_rows[:n_back]
        dd["head"] = new_rows[n_back:] + [[-1, 1, _RECORDER, ["ch"]]]
        seq, _ = original(dd, ch, verbose=False)
        layers = list(seq)
        recorder = layers.pop()
        chs = getattr(recorder, "ch", None)
        if not (isinstance(recorder, _ChannelRecorder) and isinstance(chs, list) and len(chs) >= len(rows)):
            import ultralytics

            raise RuntimeError(
                f"attnzoo.integrations.ultralytics: this ultralytics version ({ultralytics.__version__}) does not "
                f"pass its channel list to a YAML argument 'ch'; rows of fusion / resample / pyramid modules "
                f"cannot be sized (tested with 8.4.190)"
            )
        built, fix = _build(plans, chs, overrides, layers)
        if fix is None:
            break
        if all(overrides.get(k) == v for k, v in fix.items()):
            raise RuntimeError(
                f"attnzoo.integrations.ultralytics: could not size the rows {sorted(plans)} (no progress)"
            )
        overrides.update(fix)
    else:
        raise RuntimeError(f"attnzoo.integrations.ultralytics: could not size the rows {sorted(plans)}")

    for i, module in built.items():
        module = hold(module)  # the row attributes go on a holder when the module uses one of their names
        inner = module.module if isinstance(module, ModuleRow) else module
        module.i, module.f = i, rows[i][0]  # type: ignore[assignment]
        module.type = f"{type(inner).__module__}.{type(inner).__qualname__}"  # type: ignore[assignment]
        module.np = sum(p.numel() for p in module.parameters())  # type: ignore[assignment]
        layers[i] = module
    save = sorted(
        x % layer.i for layer in layers for x in ([layer.f] if isinstance(layer.f, int) else layer.f) if x != -1
    )
    if verbose:
        _log_table(layers, rows, plans, chs)
    return nn.Sequential(*layers), save


def _log_table(layers: list, rows: list, plans: dict, chs: list) -> None:
    from ultralytics.utils import LOGGER

    LOGGER.info(f"\n{'':>3}{'from':>20}{'n':>3}{'params':>10}  {'module':<45}{'arguments':<30}")
    for i, (layer, row) in enumerate(zip(layers, rows)):
        args = row[3]
        if i in plans and plans[i].shown:
            args = f"({plans[i].shown})"
        LOGGER.info(f"{i:>3}{row[0]!s:>20}{row[1]:>3}{layer.np:10.0f}  {layer.type:<45}{args!s:<30}")
