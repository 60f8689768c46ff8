"""Every portable form declared in the registry (``ModuleInfo.forms``) gives the values of its eager form.

For each declared form, each of its configurations and each export target it names:
- under ``attnzoo.export_target(target)``, ``torch.jit.trace`` records the form's marker operator (so the
  comparison is not eager against eager), and the traced module equals the eager module;
- run eagerly under the same target, with and without autograd, the portable form equals the eager form, and
  (with autograd) so do the input gradients;
- sizes that tile windows, that do not, and 1×1.

Also: ``torch.compile`` and ``torch.export`` never take a portable form, and a module that calls the predicate
declares a form (a static check over src/).
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest
import torch

import attnzoo
from attnzoo import tracing
from attnzoo.testing import flatten, randomize
from helpers import build, inputs

SIZES = [(13, 11), (7, 9), (1, 1)]

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
    module.eval()  # dropout off; BN in eval so the runs see the same statistics
    return form, module, inputs(name, batch=2, size=size, seed=1)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("name, form_index, case_index, target", CASES)
def test_portable_form_equals_eager(name: str, form_index: int, case_index: int, target: str, size) -> None:
    form, module, args = _module_and_args(name, form_index, case_index, size)
    with torch.no_grad():
        eager = flatten(module(*args))
        with attnzoo.export_target(target):
            portable = flatten(module(*args))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                traced = torch.jit.trace(module, args, check_trace=False)
        graph = str(traced.inlined_graph)
        traced_out = flatten(traced(*args))
    assert form.marker in graph, f"{name}: the {target} trace did not take the portable form ({form.marker} missing)"
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
    assert tracing.current_export_target() is None
    assert torch.jit.trace(M(), (x,))(x).sum() == 2  # hand tracing (pnnx users): the ncnn forms
    with attnzoo.export_target("onnx"):
        assert f(x).sum() == 2
    with pytest.raises(ValueError, match="export_target"):
        with attnzoo.export_target("tensorrt"):
            pass


SRC = Path(attnzoo.__file__).parent
_PREDICATES = re.compile(r"\b(portable\(|exporting\(\)|torch\.jit\.is_tracing\(\)|is_compiling\(\)|is_in_onnx_export\(\))")


def test_only_declared_modules_use_the_predicate() -> None:
    """A module file that switches on an export target declares a form for every class it registers there, and
    no module file asks the tracers directly (``tracing`` does, once)."""
    offenders, undeclared = [], []
    by_file: dict[str, list[str]] = {}
    for name in attnzoo.list_modules():
        cls = attnzoo.info(name).cls
        by_file.setdefault(cls.__module__, []).append(name)
    for module_name, names in by_file.items():
        path = SRC.parent / (module_name.replace(".", "/") + ".py")
        text = path.read_text()
        uses = set(_PREDICATES.findall(text))
        direct = uses - {"portable("}
        if direct:
            offenders.append(f"{path.name}: {sorted(direct)}")
        if "portable(" in uses and not any(attnzoo.info(n).forms for n in names):
            undeclared.append(f"{path.name} ({', '.join(names)})")
    assert not offenders, f"ask attnzoo.tracing (portable / eager_only / traced_size), not the tracers: {offenders}"
    assert not undeclared, f"these files call tracing.portable but declare no PortableForm: {undeclared}"
