"""Every portable form declared in the registry (``ModuleInfo.forms``) gives the values of its eager form.

For each declared form, each of its configurations and each export target it names:
- under ``attnzoo.export_target(target)``, ``torch.jit.trace`` records the form's marker operator (so the
  comparison is not eager against eager), and the traced module equals the eager module;
- run eagerly under the same target, with and without autograd, the portable form equals the eager form, and
  (with autograd) so do the input gradients;
- sizes that tile windows, that do not, and 1×1.

- the marker is absent from the trace of the eager forms (so it proves the form);

Also: ``torch.compile`` and ``torch.export`` never take a portable form; a module whose traced graph under a
target differs from its eager-form graph declares a form for that target (a dynamic check over the registry);
no source file asks the tracers directly, and a file that calls the predicate declares a form and names its
portable forms ``*_portable`` (static checks over src/).
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from pathlib import Path

import pytest
import torch

import attnzoo
from attnzoo import tracing
from attnzoo.testing import flatten, randomize
from helpers import build, inputs

SIZES = [(13, 11), (7, 9), (1, 1)]


def _trace(module: torch.nn.Module, args: tuple, target: str | None) -> torch.jit.ScriptModule:
    """``torch.jit.trace`` under ``export_target(target)``; ``target=None``: with every portable form off (the
    eager forms, as ``torch.compile`` gets them), although ``torch.jit.trace`` alone would take the ncnn forms."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if target is not None:
            with attnzoo.export_target(target):
                return torch.jit.trace(module, args, check_trace=False)
        saved = tracing.current_export_target
        tracing.current_export_target = lambda: None  # portable() asks it
        try:
            return torch.jit.trace(module, args, check_trace=False)
        finally:
            tracing.current_export_target = saved


def _ops(traced: torch.jit.ScriptModule) -> list[str]:
    return [node.kind() for node in traced.inlined_graph.nodes()]

CASES = [
    pytest.param(name, f, c, t, id=f"{name}-form{f}-case{c}-{t}")
    for name in attnzoo.list_modules()
    for f, form in enumerate(attnzoo.info(name).forms)
    for c in range(len(form.cases))
    for t in form.targets
]


def _module_and_args(name: str, form_index: int, case_index: int, size: tuple[int, int]):
    form = attnzoo.info(name).forms[form_index]
    module = randomize(build(name, **form.cases[case_index]), seed=3, scale=0.5)
    module.eval().double()  # dropout off, BN statistics fixed; float64: deep blocks amplify float32 rounding
    return form, module, inputs(name, batch=2, size=size, seed=1, dtype=torch.float64)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("name, form_index, case_index, target", CASES)
def test_portable_form_equals_eager(name: str, form_index: int, case_index: int, target: str, size) -> None:
    form, module, args = _module_and_args(name, form_index, case_index, size)
    with torch.no_grad():
        eager = flatten(module(*args))
        with attnzoo.export_target(target):
            portable = flatten(module(*args))
        traced = _trace(module, args, target)
        traced_out = flatten(traced(*args))
        eager_ops = _ops(_trace(module, args, None))
    portable_ops = _ops(traced)
    # where the form adds no operator at this size (e.g. exact pooling of a 1×1 map is the identity), the two
    # graphs agree and only the values are compared
    if Counter(portable_ops) - Counter(eager_ops):
        assert form.marker in portable_ops, f"{name}: the {target} trace did not take the portable form ({form.marker} missing)"
    assert form.marker not in eager_ops, f"{name}: the marker {form.marker} is in the eager form's trace too: it proves nothing"
    for e, p, t in zip(eager, portable, traced_out, strict=True):
        torch.testing.assert_close(p, e, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(t, e, atol=1e-5, rtol=1e-4)
    if not form.grad:
        return
    grads = []
    for ctx in (None, target):
        xs = [a.detach().requires_grad_() for a in flatten(args)]
        it = iter(xs)
        rebuilt = tuple([next(it) for _ in a] if isinstance(a, (list, tuple)) else next(it) for a in args)
        if ctx is None:
            out = flatten(module(*rebuilt))
        else:
            with attnzoo.export_target(ctx):
                out = flatten(module(*rebuilt))
        sum(o.double().sum() * (i + 1) for i, o in enumerate(out)).backward()
        grads.append([x.grad for x in xs])
    for ge, gp in zip(*grads, strict=True):
        torch.testing.assert_close(gp, ge, atol=1e-4, rtol=1e-3)


def test_every_form_has_a_case() -> None:
    assert CASES, "no module declares a portable form"


def test_predicate_is_off_under_compile_and_export() -> None:
    def f(x: torch.Tensor) -> torch.Tensor:
        return x + (1.0 if tracing.portable(*tracing.EXPORT_TARGETS) else 0.0)

    x = torch.zeros(2)
    assert torch.compile(f, fullgraph=True, backend="eager")(x).sum() == 0

    class M(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return f(x)

    assert torch.export.export(M(), (x,)).module()(x).sum() == 0
    # for_export(): the size-generic schedules under torch.export and the runtimes, never under torch.compile
    def g(x: torch.Tensor) -> torch.Tensor:
        return x + (1.0 if tracing.for_export() else 0.0)

    class G(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return g(x)

    assert torch.compile(g, fullgraph=True, backend="eager")(x).sum() == 0
    assert torch.export.export(G(), (x,)).module()(x).sum() == 2
    assert torch.jit.trace(G(), (x,), check_trace=False)(x).sum() == 2
    assert g(x).sum() == 0
    assert tracing.current_export_target() is None
    # hand tracing (pnnx users): the ncnn forms; the trace differs from eager on purpose, so no eager re-check
    assert torch.jit.trace(M(), (x,), check_trace=False)(x).sum() == 2
    with attnzoo.export_target("onnx"):
        assert f(x).sum() == 2
    with pytest.raises(ValueError, match="export_target"):
        with attnzoo.export_target("tensorrt"):
            pass


def _configurations(name: str) -> list[dict]:
    """The contract configuration and every configuration a declared form is tested under."""
    configs: list[dict] = [{}]
    for form in attnzoo.info(name).forms:
        configs += [dict(c) for c in form.cases if dict(c) not in configs]
    return configs


@pytest.mark.parametrize("name", attnzoo.list_modules())
def test_a_graph_that_changes_under_a_target_is_declared(name: str) -> None:
    """Traced under each export target and with every form off, at an odd size: where the graphs differ, the
    module declares a form for that target (a form nobody declared would go untested)."""
    declared = {t for form in attnzoo.info(name).forms for t in form.targets}
    for config in _configurations(name):
        module = build(name, **config).eval()
        args = inputs(name, batch=2, size=(7, 9), seed=1)
        with torch.no_grad():
            eager = _ops(_trace(module, args, None))
            for target in tracing.EXPORT_TARGETS:
                if target not in declared:
                    assert _ops(_trace(module, args, target)) == eager, (
                        f"{name} {config}: its {target} graph differs from the eager forms' graph, but no form of "
                        f"{name} declares {target!r} (register(..., forms=(PortableForm(targets=...),)))"
                    )


SRC = Path(attnzoo.__file__).parent
_PREDICATES = re.compile(
    r"\b(portable\(|exporting\(\)|torch\.jit\.is_tracing\(\)|is_compiling\(\)|is_in_onnx_export\(\)|current_export_target\(\))"
)
_PORTABLE_FN = re.compile(r"\b\w+_portable\(")  # defined here or shared (e.g. in functional/)


def test_only_declared_modules_use_the_predicate() -> None:
    """No source file asks the tracers or the export target directly (``tracing`` does, once); a module file that switches on an
    export target declares a form for a class it registers there; every file that calls the predicate names its
    portable forms ``*_portable`` (the naming rule of docs/exports.md: it defines or calls one)."""
    registered: dict[Path, list[str]] = {}
    for name in attnzoo.list_modules():
        path = SRC.parent / (attnzoo.info(name).cls.__module__.replace(".", "/") + ".py")
        registered.setdefault(path, []).append(name)
    offenders, undeclared, unnamed = [], [], []
    for path in sorted(SRC.rglob("*.py")):
        if path.name == "tracing.py" and path.parent == SRC:
            continue
        text = path.read_text()
        uses = set(_PREDICATES.findall(text))
        rel = path.relative_to(SRC)
        if uses - {"portable("}:
            offenders.append(f"{rel}: {sorted(uses - {'portable('})}")
        if "portable(" not in uses:
            continue
        if not _PORTABLE_FN.search(text):
            unnamed.append(str(rel))
        names = registered.get(path)
        if names is not None and not any(attnzoo.info(n).forms for n in names):
            undeclared.append(f"{rel} ({', '.join(names)})")
    assert not offenders, (
        f"ask attnzoo.tracing (portable / for_runtime / eager_only / inplace_ok / is_tracing), not the tracers or "
        f"the target itself: {offenders}"
    )
    assert not undeclared, f"these files call tracing.portable but declare no PortableForm: {undeclared}"
    assert not unnamed, f"these files call tracing.portable but define or call no *_portable form: {unnamed}"


def forms_markdown() -> str:
    """The table of docs/exports.md: every declared form, from the registry."""
    rows = ["| module | targets | marker | why the eager form does not export | tested configurations |",
            "|---|---|---|---|---|"]  # fmt: skip
    for name in sorted(attnzoo.list_modules()):
        for form in attnzoo.info(name).forms:
            cases = "; ".join(", ".join(f"{k}={v!r}" for k, v in c.items()) or "default" for c in form.cases)
            targets = ", ".join(form.targets)
            rows.append(f"| `{name}` | {targets} | `{form.marker}` | {form.reason} | {cases} |")
    return "\n".join(rows)


def test_docs_list_every_form() -> None:
    text = (SRC.parents[1] / "docs" / "exports.md").read_text()
    block = re.search(r"<!-- forms:start -->\n(.*?)\n<!-- forms:end -->", text, re.S)
    assert block, "docs/exports.md lacks the <!-- forms:start --> … <!-- forms:end --> markers"
    expected = forms_markdown()
    assert block.group(1).strip() == expected, f"docs/exports.md: replace the forms table by\n{expected}"
