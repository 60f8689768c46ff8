"""The module registry: ``register``, ``create``, ``info``, ``list_modules``, ``entries`` and ``classes``.

Every module of the library (and any third-party module) is registered once under a short lowercase name
with a :class:`ModuleInfo`.  The contract test suite, the ``attnzoo bench`` profiler, ``attnzoo deploy`` and the
integrations all iterate over this registry (through its public functions, never the private dict),
so a module is tested and profiled the moment it is registered.
"""

from __future__ import annotations

import fnmatch
import inspect
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping, Sequence

import torch.nn as nn

from .names import resolve
from .shape_rules import OUT_CHANNELS, SAME_SHAPE, Args, ShapeRule, strided, upsampled
from .tracing import PortableForm

__all__ = [
    "FAMILIES",
    "LAYOUTS",
    "CONTRACT_CHECKS",
    "ModuleInfo",
    "ShapeRule",
    "SAME_SHAPE",
    "OUT_CHANNELS",
    "upsampled",
    "strided",
    "register",
    "create",
    "info",
    "list_modules",
    "entries",
    "classes",
    "unregister",
    "SPATIAL_RANKS",
]

FAMILIES = ("channel", "spatial", "self_attention", "local", "fusion", "resample", "sequence", "temporal")
LAYOUTS = ("nchw", "pair", "pair_same", "pyramid", "tokens", "temporal", "multi")

#: The spatial ranks a module may support (``ModuleInfo.dims``): 1-D signals B×C×L, 2-D maps B×C×H×W, 3-D volumes
#: and clips B×C×D×H×W.
SPATIAL_RANKS = (1, 2, 3)

#: Names of the contract checks a module may declare an exception for (with a reason).
CONTRACT_CHECKS = (
    "any_size",
    "bad_input",
    "gradients",
    "gradcheck",
    "degenerate",
    "bfloat16",
    "float16",
    "channels_last",
    "train_batch1",
    "deterministic",
    "eval_determinism",
    "serialisation",
    "torchscript",
    "fx",
    "export",
    "compile",
    "onnx",
    "openvino",
    "ncnn",
)


#: (H, W) at which :meth:`ModuleInfo.preserves_shape` evaluates a size rule: even, odd, 1 and mixed sizes.
PROBE_SIZES = ((1, 1), (2, 3), (7, 5), (13, 11), (16, 16), (56, 56))

#: What the tools that put a module into an existing network (insert, timm ``attn_layer``, compare, viz,
#: plain YOLO rows) need from it.
SAME_SHAPE_NEED = "one B×C×H×W map in and a map of the same shape out (layout 'nchw', same channels and H×W)"


@dataclass(frozen=True)
class ModuleInfo:
    """What the registry knows about one module.

    Attributes:
        name: registry name (``attnzoo.create(name, ...)``).
        family: one of :data:`FAMILIES`.
        cls: the ``nn.Module`` class; ``cls(channels, **kwargs)`` builds it.
        paper: title, venue and year of the paper that defines the module.
        url: link to the paper (or the official code).
        layout: input layout, one of :data:`LAYOUTS`.
        complexity: cost in the number of positions N (over every spatial axis), e.g. ``"O(N)"`` or ``"O(N^2)"``;
            for a module of several ranks, one string true for each (``"O(N·k^d)"``, d the rank).
        summary: one line on what the module does.
        identity_at_init: the paper initialises the block as the identity (zero-init gamma / BN / GN).
        min_size: smallest spatial size (H, W) — for the temporal layout (N, T) — the module accepts with its
            default arguments; smaller inputs must raise ``ValueError``.  (1, 1) for almost every module.
        shape: what the module does to the shape of its main map (:class:`ShapeRule`); :data:`SAME_SHAPE`
            when it keeps it for every argument.  Ask :meth:`output_channels`, :meth:`output_size`,
            :meth:`preserves_shape` and :meth:`same_shape_nchw` rather than the layout or family.
        output_shape: ``f(module, *inputs) -> list of shapes`` for layouts whose output is not one map the
            :class:`ShapeRule` describes: pyramids (per-level shapes) and modules returning several tensors.
        test_kwargs: constructor arguments the contract suite and the unit tests use on their small inputs
            (merged into the defaults), e.g. fewer heads.  The profiler (``attnzoo bench``), ``attnzoo deploy``
            and the documentation build the module with its default arguments instead.
        maps: the capture keys the module records under ``attnzoo.capture_attention`` (the contract checks
            that it records exactly these); empty for modules without an attention or gate map.
        exceptions: contract checks (names from :data:`CONTRACT_CHECKS`) this module cannot pass, each with
            the reason.  The contract suite asserts that the list stays short and justified.
        exceptions_by_dims: the checks that fail only at a spatial rank other than 2, per rank, each with the
            reason (``{3: {"ncnn": "..."}}``); :meth:`exceptions_at` merges them with ``exceptions``.
        forms: the module's portable forms for export targets (:class:`attnzoo.tracing.PortableForm`), each
            tested equal to the eager form; a module that calls ``tracing.portable`` must declare one.
        dims: the spatial ranks the class supports (its keyword ``dims=``): ``(2,)`` for a 2-D only module,
            ``(1, 2, 3)`` for one that also runs on B×C×L signals and B×C×D×H×W volumes.  ``layout`` keeps the 2-D
            name; :func:`attnzoo.layouts.layout_for` gives the layout of a rank.
    """

    name: str
    family: str
    cls: type
    paper: str
    url: str
    layout: str
    complexity: str
    summary: str
    identity_at_init: bool = False
    min_size: tuple[int, int] = (1, 1)
    output_shape: Callable[..., Any] | None = None
    test_kwargs: Mapping[str, Any] = field(default_factory=dict)
    exceptions: Mapping[str, str] = field(default_factory=dict)
    exceptions_by_dims: Mapping[int, Mapping[str, str]] = field(default_factory=dict)
    maps: tuple[str, ...] = ()
    forms: tuple[PortableForm, ...] = ()
    shape: ShapeRule = SAME_SHAPE
    dims: tuple[int, ...] = (2,)

    def exceptions_at(self, dims: int = 2) -> Mapping[str, str]:
        """The checks declared to fail at spatial rank ``dims``: ``exceptions`` and ``exceptions_by_dims[dims]``."""
        return {**self.exceptions, **self.exceptions_by_dims.get(dims, {})}

    # ------------------------------------------------------------------------------------------------------------
    # shape semantics: every tool asks these instead of branching on the layout or the family

    def arguments(self, channels: Any, **kwargs: Any) -> dict[str, Any]:
        """The arguments ``cls(channels, **kwargs)`` receives, by name, defaults applied (deprecated names mapped
        to the current ones); ``"channels"`` holds ``channels``.  ``TypeError`` for an argument the class does
        not take."""
        init = getattr(self.cls, "__init__")
        renamed = getattr(init, "deprecated_args", {})
        convert = getattr(init, "deprecated_convert", {})
        given = {}
        for key, value in kwargs.items():
            given[renamed.get(key, key)] = convert[key](value) if key in convert else value
        params = list(inspect.signature(init).parameters.values())
        try:
            bound = inspect.Signature(params).bind(None, channels, **given)
        except TypeError as e:
            raise TypeError(f"{self.name} ({self.cls.__name__}): {e}") from None
        bound.apply_defaults()
        args = dict(bound.arguments)
        for p in params:
            if p.kind is inspect.Parameter.VAR_KEYWORD:
                args.update(args.pop(p.name, {}))
            elif p.kind is inspect.Parameter.VAR_POSITIONAL:
                args.pop(p.name, None)
        args.pop(params[0].name, None)
        args.pop(params[1].name, None)
        return {"channels": channels, **args}

    def _single_map(self, what: str) -> None:
        if self.layout == "pyramid":
            raise ValueError(
                f"{self.name} ({self.cls.__name__}): {what} is defined for one main map; layout 'pyramid' maps a list "
                f"of levels to a list (ModuleInfo.output_shape gives their shapes)"
            )

    def output_channels(self, channels: int, **kwargs: Any) -> int:
        """Channels of the output map of ``create(name, channels, **kwargs)``."""
        self._single_map("output_channels")
        return self.shape.out_channels(self.arguments(channels, **kwargs))

    def output_size(self, h: int, w: int, channels: int, **kwargs: Any) -> tuple[int, int]:
        """(H, W) of the output map of ``create(name, channels, **kwargs)`` on an H×W input ((N, T) for the
        temporal layout)."""
        self._single_map("output_size")
        return self.shape.out_size(h, w, self.arguments(channels, **kwargs))

    def preserves_shape(self, channels: int, **kwargs: Any) -> bool:
        """Whether ``create(name, channels, **kwargs)`` keeps the channels and the size of its main map (the size
        rule is evaluated at :data:`PROBE_SIZES`).  ``False`` for pyramids."""
        return self.layout != "pyramid" and not self._shape_change(self.arguments(channels, **kwargs))

    def _shape_change(self, args: Args) -> str:
        c = args["channels"]
        oc = "C" if c is None else self.shape.out_channels(args)  # channels not known yet: judge the size only
        c = "C" if c is None else c
        moved = [(s, self.shape.out_size(*s, args)) for s in PROBE_SIZES]
        moved = [(s, o) for s, o in moved if o != s]
        if oc == c and not moved:
            return ""
        (h, w), (oh, ow) = moved[-1] if moved else (PROBE_SIZES[-1], PROBE_SIZES[-1])
        how = f" ({self.shape.text})" if self.shape.text else ""
        return f"turns a B×{c}×{h}×{w} map into B×{oc}×{oh}×{ow}{how}"

    def shape_change(self, channels: int | None, **kwargs: Any) -> str:
        """``""`` when ``create(name, channels, **kwargs)`` is a same-shape single-map ``nchw`` module (what
        :func:`attnzoo.insert`, timm's ``attn_layer``, ``compare`` and plain YOLO rows need); else what it does
        instead, in words ("takes two maps ...", "turns a B×64×56×56 map into B×64×112×112 ...").
        ``channels=None`` (not known yet) judges the layout and the size only."""
        if self.layout != "nchw":
            from .layouts import LAYOUT_OBJECTS  # layouts imports this module

            return f"takes {LAYOUT_OBJECTS[self.layout].text} (layout {self.layout!r})"
        return self._shape_change(self.arguments(channels, **kwargs))

    def same_shape_nchw(self, channels: int | None, **kwargs: Any) -> bool:
        """Whether ``create(name, channels, **kwargs)`` maps one B×C×H×W map to a map of the same shape."""
        return not self.shape_change(channels, **kwargs)

    def require_same_shape_nchw(self, tool: str, channels: int | None, **kwargs: Any) -> None:
        """``ValueError`` naming the module, what it does to the shape and what ``tool`` needs, unless
        :meth:`same_shape_nchw`."""
        change = self.shape_change(channels, **kwargs)
        if change:
            args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
            with_args = f" with {args}" if args else ""
            raise ValueError(
                f"{tool}: module {self.name!r} ({self.cls.__name__}){with_args} {change}; {tool} needs {SAME_SHAPE_NEED}"
            )

    def output_shape_of(self, module: nn.Module, *inputs: Any) -> list[tuple[int, ...]]:
        """Output shapes of ``module`` (built from this entry) on ``inputs``: ``output_shape`` when declared, else
        the main map's shape by the :class:`ShapeRule`, with the arguments read from the module's attributes of
        the same names (modules store their resolved arguments: ``self.scale``, ``self.out_channels``)."""
        if self.output_shape is not None:
            shapes = self.output_shape(module, *inputs)
            return [tuple(s) for s in shapes] if isinstance(shapes, list) else [tuple(shapes)]
        self._single_map("output_shape_of")
        x = inputs[0][0] if isinstance(inputs[0], (list, tuple)) else inputs[0]
        if not self.shape.changes:
            return [tuple(x.shape)]
        params = list(inspect.signature(getattr(self.cls, "__init__")).parameters.values())[2:]
        args = {p.name: getattr(module, p.name, p.default) for p in params}
        args["channels"] = int(x.shape[1])
        return [(int(x.shape[0]), self.shape.out_channels(args), *self.shape.out_size(x.shape[2], x.shape[3], args))]

    def __str__(self) -> str:  # print(attnzoo.info("cbam")): what a person asks first
        from .layouts import LAYOUT_OBJECTS  # layouts imports this module

        shape = (
            ""
            if self.layout == "pyramid"
            else (self.shape.text or "changes")
            if self.shape.changes
            else "same as the input"
        )
        rows = [("paper", self.paper), ("url", self.url), ("family", self.family),
                ("layout", f"{self.layout} ({LAYOUT_OBJECTS[self.layout].text})"), ("shape", shape),
                ("cost", self.complexity), ("summary", self.summary)]  # fmt: skip
        return "\n".join(
            [f"{self.name} ({self.cls.__module__}.{self.cls.__qualname__})"] + [f"  {k:<8} {v}" for k, v in rows if v]
        )

    def __repr__(self) -> str:  # short: the class object makes the default repr noisy
        return (
            f"ModuleInfo(name={self.name!r}, family={self.family!r}, cls={self.cls.__name__}, layout={self.layout!r})"
        )


_REGISTRY: dict[str, ModuleInfo] = {}


def register(
    name: str,
    *,
    family: str,
    paper: str,
    complexity: str,
    layout: str = "nchw",
    url: str = "",
    summary: str = "",
    identity_at_init: bool = False,
    min_size: tuple[int, int] = (1, 1),
    output_shape: Callable[..., Any] | None = None,
    test_kwargs: Mapping[str, Any] | None = None,
    exceptions: Mapping[str, str] | None = None,
    exceptions_by_dims: Mapping[int, Mapping[str, str]] | None = None,
    maps: Sequence[str] = (),
    forms: Sequence[PortableForm] = (),
    shape: ShapeRule = SAME_SHAPE,
    dims: Sequence[int] = (2,),
) -> Callable[[type], type]:
    """Class decorator that registers an ``nn.Module`` under ``name``.

    Usable by third parties::

        @attnzoo.register("my_gate", family="channel", paper="Me, 2026", complexity="O(N)", maps=("gate",))
        class MyGate(nn.Module):
            def __init__(self, channels: int): ...

    The class must take the channel count as its first positional argument.  Registering an existing name
    raises ``ValueError`` (no silent overwrite).  ``dims``: the spatial ranks the class supports (from
    :data:`SPATIAL_RANKS`, 2 included); a class with more than ``(2,)`` takes a keyword ``dims`` (default 2).
    """
    if not isinstance(name, str) or not name or name != name.lower() or " " in name:
        raise ValueError(f"register: name must be a non-empty lowercase string without spaces, got {name!r}")
    if not isinstance(complexity, str) or not complexity.startswith("O("):
        raise ValueError(f"register({name!r}): complexity must be a string such as 'O(N)', got {complexity!r}")
    if family not in FAMILIES:
        raise ValueError(f"register({name!r}): family must be one of {FAMILIES}, got {family!r}")
    if layout not in LAYOUTS:
        raise ValueError(f"register({name!r}): layout must be one of {LAYOUTS}, got {layout!r}")
    by_dims = {d: dict(e) for d, e in (exceptions_by_dims or {}).items()}
    declared = [*(exceptions or {}).items(), *(item for e in by_dims.values() for item in e.items())]
    unknown = sorted({check for check, _ in declared} - set(CONTRACT_CHECKS))
    if unknown:
        raise ValueError(f"register({name!r}): unknown checks in exceptions {unknown}; known: {CONTRACT_CHECKS}")
    if not isinstance(shape, ShapeRule):
        raise ValueError(f"register({name!r}): shape must be an attnzoo.ShapeRule, got {shape!r}")
    if shape.changes and layout == "pyramid":
        raise ValueError(f"register({name!r}): a pyramid module declares per-level shapes by output_shape, not shape")
    if not all(isinstance(f, PortableForm) for f in forms):
        raise ValueError(f"register({name!r}): forms must be attnzoo.tracing.PortableForm objects, got {forms!r}")
    ranks = tuple(sorted(set(dims))) if isinstance(dims, (list, tuple)) else ()
    if not ranks or 2 not in ranks or not set(ranks) <= set(SPATIAL_RANKS):
        raise ValueError(f"register({name!r}): dims must be ranks from {SPATIAL_RANKS} including 2, got {dims!r}")
    if not set(by_dims) <= set(ranks) - {2}:
        raise ValueError(f"register({name!r}): exceptions_by_dims keys must be ranks of dims but 2: {sorted(by_dims)}")
    for check, reason in declared:
        if not isinstance(reason, str) or len(reason.strip()) < 10:
            raise ValueError(f"register({name!r}): exception {check!r} needs a real reason, got {reason!r}")

    def decorator(cls: type) -> type:
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            raise ValueError(f"register({name!r}): expected an nn.Module subclass, got {cls!r}")
        if ranks != (2,) and "dims" not in inspect.signature(getattr(cls, "__init__")).parameters:
            raise ValueError(f"register({name!r}): dims={ranks} needs a keyword argument `dims` in {cls.__name__}")
        if name in _REGISTRY and _REGISTRY[name].cls is not cls:
            raise ValueError(f"register: name {name!r} is already registered to {_REGISTRY[name].cls.__name__}")
        doc = (inspect.getdoc(cls) or "").strip().splitlines()
        _REGISTRY[name] = ModuleInfo(
            name=name,
            family=family,
            cls=cls,
            paper=paper,
            url=url,
            layout=layout,
            complexity=complexity,
            summary=summary or (doc[0] if doc else cls.__name__),
            identity_at_init=identity_at_init,
            min_size=(int(min_size[0]), int(min_size[1])),
            output_shape=output_shape,
            test_kwargs=MappingProxyType(dict(test_kwargs or {})),
            exceptions=MappingProxyType(dict(exceptions or {})),
            exceptions_by_dims=MappingProxyType({d: MappingProxyType(e) for d, e in by_dims.items()}),
            maps=tuple(maps),
            forms=tuple(forms),
            shape=shape,
            dims=ranks,
        )
        return cls

    return decorator


def info(name: str) -> ModuleInfo:
    """Return the :class:`ModuleInfo` of a registered module.  ``name`` is a registry name, a class name or a
    community alias, in any case (:mod:`attnzoo.names`); ``ValueError`` with close matches if unknown."""
    return _REGISTRY[resolve(name, _REGISTRY)]


def list_modules(family: str | None = None, *, pattern: str | None = None, dims: int | None = None) -> list[str]:
    """Sorted registry names, optionally of one family and / or matching a shell-style wildcard ``pattern``
    (case-insensitive, as timm's ``list_models("*cb*")``) and / or supporting the spatial rank ``dims``
    (``list_modules(dims=3)``: what exists in 3-D).  The positional argument is a family name or, when it
    contains ``*``, ``?`` or ``[``, a pattern: ``list_modules("channel")``, ``list_modules("*cbam*")``."""
    if family is not None and family not in FAMILIES and isinstance(family, str) and any(c in family for c in "*?["):
        if pattern is not None:
            raise ValueError(f"list_modules: two patterns, {family!r} and pattern={pattern!r}; give one")
        family, pattern = None, family
    if family is not None and family not in FAMILIES:
        raise ValueError(
            f"list_modules: family must be one of {FAMILIES} or None (or a wildcard pattern such as '*cb*'), "
            f"got {family!r}"
        )
    if pattern is not None and not isinstance(pattern, str):
        raise ValueError(f"list_modules: pattern must be a string such as '*cb*', got {pattern!r}")
    if dims is not None and dims not in SPATIAL_RANKS:
        raise ValueError(f"list_modules: dims must be one of {SPATIAL_RANKS} or None, got {dims!r}")
    return sorted(
        n
        for n, i in _REGISTRY.items()
        if (family is None or i.family == family)
        and (pattern is None or fnmatch.fnmatchcase(n, pattern.lower()))
        and (dims is None or dims in i.dims)
    )


def create(name: str, channels: int | Sequence[int], **kwargs: Any) -> nn.Module:
    """Build a registered module: ``info(name).cls(channels, **kwargs)``.

    ``channels`` is an int (a sequence of ints, finest level first, for pyramid modules).  An unknown name
    raises ``ValueError`` listing close matches; an unknown keyword raises ``TypeError`` naming the accepted
    ones; ``dims`` (the spatial rank, ``spatial_dims`` as MONAI spells it is a deprecated alias) outside
    ``info(name).dims`` raises ``ValueError`` naming the supported ranks.
    """
    entry = info(name)
    rank = kwargs.get("dims", kwargs.get("spatial_dims", 2))
    if rank not in entry.dims or isinstance(rank, bool):
        raise ValueError(f"{entry.name} ({entry.cls.__name__}) supports dims {entry.dims}, got {rank!r}")
    params = inspect.signature(getattr(entry.cls, "__init__")).parameters
    if "dims" not in params:  # a 2-D only class: dims=2 is what it is
        kwargs = {k: v for k, v in kwargs.items() if k not in ("dims", "spatial_dims")}
    takes_var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if not takes_var_kw:
        accepted = [p for p in list(params)[2:] if params[p].kind is not inspect.Parameter.VAR_POSITIONAL]
        aliases = getattr(getattr(entry.cls, "__init__"), "deprecated_args", {})
        unknown = sorted(set(kwargs) - set(accepted) - set(aliases))
        if unknown:
            raise TypeError(
                f"{entry.name} ({entry.cls.__name__}) got unknown keyword(s) {unknown}; accepted: {accepted}"
            )
    return entry.cls(channels, **kwargs)


def entries(family: str | None = None) -> list[ModuleInfo]:
    """The :class:`ModuleInfo` of every registered module (optionally of one family), sorted by name."""
    return [_REGISTRY[n] for n in list_modules(family)]


def classes(family: str | None = None) -> dict[str, type]:
    """``{registry name: class}`` of every registered module (optionally of one family), sorted by name.

    Several names may share a class only if a third party registers it twice; tools that need the distinct
    classes (e.g. to find the registered modules inside a network) take ``set(classes().values())``.
    """
    return {e.name: e.cls for e in entries(family)}


def unregister(name: str) -> ModuleInfo:
    """Remove a registered module and return its :class:`ModuleInfo` (``ValueError`` if unknown).

    For third-party code and tests that register temporary modules (a notebook cell run twice, a test that
    registers a stand-in); the library's own modules are registered once at import and never removed.
    """
    entry = info(name)
    del _REGISTRY[entry.name]
    return entry
