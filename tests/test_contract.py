"""The contract every registered module passes, parametrised over the whole registry.

A module registered anywhere in attnzoo is tested here the moment it is registered.  A check it cannot pass
must be declared in its ``ModuleInfo.exceptions`` with a reason; ``helpers.contract`` then asserts that the
check really fails (a stale declaration fails the suite).
"""

from __future__ import annotations

import copy
from typing import Callable

import pytest
import torch
import torch.nn as nn

import attnzoo
from attnzoo.layouts import layout_for
from attnzoo.registry import CONTRACT_CHECKS
from helpers import (
    assert_close,
    build,
    contract,
    expected_shapes,
    flatten,
    inputs,
    map_args,
    min_size_nd,
    randomize,
    tensors_of,
)

NAMES = attnzoo.list_modules()
SIZES = [(1, 1), (1, 6), (2, 3), (7, 5), (13, 11), (16, 16), (5, 17)]
#: The any-size sizes of the other spatial ranks: each axis at 1 alone, odd, anisotropic (small: CI time).
SIZES_ND = {
    1: [(1,), (2,), (7,), (13,), (64,)],
    3: [(1, 1, 1), (1, 5, 7), (5, 1, 7), (5, 7, 1), (2, 3, 4), (4, 7, 6)],
}


def case_id(name: str, dims: int) -> str:
    """``se`` for the 2-D case (the ids of the suite before ranks), ``se-1d`` / ``se-3d`` for the others."""
    return name if dims == 2 else f"{name}-{dims}d"


def cases(names: list[str]) -> list:
    """(name, dims) for each module and each spatial rank it declares (``ModuleInfo.dims``)."""
    return [pytest.param(n, d, id=case_id(n, d)) for n in names for d in attnzoo.info(n).dims]


CASES = cases(NAMES)


def ready(name: str, mode: str = "eval", dtype: torch.dtype = torch.float32, dims: int = 2) -> nn.Module:
    m = randomize(build(name, dims=dims)).to(dtype)
    return m.train(mode == "train")


def registered_in_source() -> set[str]:
    """The names of the ``@register("name", ...)`` decorators in src/attnzoo (or a file's ``functools.partial`` of
    it), read statically."""
    import ast
    from pathlib import Path

    def partial_of_register(value: ast.expr) -> bool:  # ``functools.partial(register, family=..., ...)``
        return (
            isinstance(value, ast.Call)
            and getattr(value.func, "attr", getattr(value.func, "id", None)) == "partial"
            and bool(value.args)
            and getattr(value.args[0], "id", None) == "register"
        )

    trees = [(path, ast.parse(path.read_text())) for path in Path(attnzoo.__file__).parent.rglob("*.py")]
    registers = {"register"} | {  # the partials may be imported by other files (sequence's ``_register_tokens``)
        target.id
        for _, tree in trees
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and partial_of_register(node.value)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    names: set[str] = set()
    for path, tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                for dec in node.decorator_list:
                    if isinstance(dec, ast.Call) and getattr(dec.func, "id", None) in registers and dec.args:
                        assert isinstance(dec.args[0], ast.Constant), f"{path}: register() needs a literal name"
                        names.add(dec.args[0].value)
    return names


def test_registry_is_populated():
    """Importing attnzoo registers every module the source declares (no module file left unimported)."""
    assert set(NAMES) == registered_in_source()
    for family in attnzoo.FAMILIES:
        for n in attnzoo.list_modules(family):
            assert attnzoo.info(n).family == family


@pytest.mark.parametrize("name, dims", CASES)
def test_any_size(name, dims):
    minimum = min_size_nd(name, dims)
    with contract(name, "any_size", dims):
        built = {mode: ready(name, mode, dims=dims) for mode in ("train", "eval")}  # one module per mode, every size
        for size in SIZES if dims == 2 else SIZES_ND[dims]:
            for batch, mode in ((2, "train"), (1, "eval")):
                m = built[mode]
                args = inputs(name, batch=batch, size=size, respect_min_size=False, dims=dims)
                if any(s < lo for s, lo in zip(size, minimum)):
                    with pytest.raises(ValueError, match=type(m).__name__):
                        m(*args)
                    continue
                out = m(*args)
                got = [tuple(t.shape) for t in flatten(out)]
                assert got == expected_shapes(name, m, args), f"{name} at {size} batch {batch}"
                assert all(torch.isfinite(t).all() for t in flatten(out)), f"{name}: non-finite output at {size}"


def bad_inputs(name: str, dims: int = 2) -> list[tuple[str, tuple]]:
    """Inputs with a wrong rank, channel count, level or shape, from the module's layout (of rank ``dims``)."""
    return layout_for(name, dims).bad_inputs(inputs(name, size=(7, 9), dims=dims))


@pytest.mark.parametrize("name, dims", CASES)
def test_bad_input(name, dims):
    with contract(name, "bad_input", dims):
        m = ready(name, dims=dims)
        for what, args in bad_inputs(name, dims):
            with pytest.raises(ValueError, match=type(m).__name__) as err:
                m(*args)
            assert "expected" in str(err.value) and "got" in str(err.value), f"{name} / {what}: {err.value}"
        bad_channels = [] if attnzoo.info(name).layout == "pyramid" else 0
        rank = {} if dims == 2 else {"dims": dims}
        with pytest.raises(ValueError):
            attnzoo.create(name, bad_channels, **attnzoo.info(name).test_kwargs, **rank)
        if attnzoo.info(name).layout == "pyramid":
            with pytest.raises(ValueError):
                attnzoo.create(name, [8], **attnzoo.info(name).test_kwargs)


@pytest.mark.parametrize("name, dims", CASES)
def test_gradients(name, dims):
    """backward reaches every parameter and the input with finite, non-zero gradients.  The same forward and
    backward run under ``torch.use_deterministic_algorithms(True)`` (the "deterministic" check, unless the module
    declares it unsupported); the flag is restored."""
    deterministic = "deterministic" not in attnzoo.info(name).exceptions
    prev, warn_only = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        with contract(name, "deterministic", dims):
            torch.use_deterministic_algorithms(deterministic)
            m = ready(name, "train", dims=dims)
            args = inputs(name, size=(7, 5), dims=dims)
            flat, rebuild = tensors_of(args)
            flat = [t.requires_grad_() for t in flat]
            out = flatten(m(*rebuild(flat)))
            g = torch.Generator().manual_seed(3)
            loss = sum((o * torch.randn(o.shape, generator=g)).sum() for o in out)
            loss.backward()
    finally:
        torch.use_deterministic_algorithms(prev, warn_only=warn_only)
    with contract(name, "gradients", dims):
        assert all(torch.isfinite(t).all() for t in out), f"{name}: non-finite output"
        for pname, p in m.named_parameters():
            assert p.grad is not None, f"{name}: parameter {pname} got no gradient"
            assert torch.isfinite(p.grad).all(), f"{name}: non-finite gradient in {pname}"
            assert p.grad.abs().sum() > 0, f"{name}: zero gradient in {pname}"
        assert any(t.grad is not None and t.grad.abs().sum() > 0 for t in flat), f"{name}: no gradient to the input"


#: Degenerate inputs (the contract's degenerate-input point): no spread, one value, large values, one position.
DEGENERATE: dict[str, tuple[tuple[int, int], Callable[[torch.Tensor], torch.Tensor]]] = {
    "all zeros": ((7, 5), torch.zeros_like),
    "a constant map": ((7, 5), lambda t: torch.full_like(t, 0.7)),
    "values ×1e3": ((7, 5), lambda t: t * 1e3),
    "a 1×1 map": ((1, 1), lambda t: t),
}


@pytest.mark.parametrize("name, dims", CASES)
def test_degenerate_inputs(name, dims):
    """Outputs, input gradients and parameter gradients are finite on degenerate inputs, in train and eval mode
    (a normalisation over one value or a zero spread must not put NaN into backward)."""
    with contract(name, "degenerate", dims):
        for mode in ("train", "eval"):
            m = ready(name, mode, dims=dims)
            for case, (size, make) in DEGENERATE.items():
                args = map_args(inputs(name, size=size, dims=dims), make)
                flat, rebuild = tensors_of(args)
                flat = [t.requires_grad_() for t in flat]
                m.zero_grad(set_to_none=True)
                out = flatten(m(*rebuild(flat)))
                where = f"{name} ({mode}) on {case}"
                assert all(torch.isfinite(o).all() for o in out), f"{where}: non-finite output"
                sum((o * (1 + torch.arange(o.numel()).view(o.shape) % 3)).sum() for o in out).backward()
                for t in flat:
                    assert t.grad is None or torch.isfinite(t.grad).all(), f"{where}: non-finite input gradient"
                for pname, p in m.named_parameters():
                    assert p.grad is None or torch.isfinite(p.grad).all(), f"{where}: non-finite gradient of {pname}"


#: gradcheck sizes per rank (float64, tiny: its cost grows with the input's numel).
GRADCHECK_SIZE = {1: (5,), 2: (4, 3), 3: (3, 2, 2)}


@pytest.mark.parametrize("name, dims", CASES)
def test_gradcheck(name, dims):
    with contract(name, "gradcheck", dims):
        m = ready(name, "train", torch.float64, dims=dims)
        args = inputs(name, size=GRADCHECK_SIZE[dims], dtype=torch.float64, dims=dims)
        flat, rebuild = tensors_of(args)
        flat = [t.requires_grad_() for t in flat]

        def fn(*ts):
            return tuple(flatten(m(*rebuild(list(ts)))))

        assert torch.autograd.gradcheck(fn, tuple(flat), eps=1e-6, atol=1e-5, rtol=1e-3, fast_mode=True)


@pytest.mark.parametrize("name, dims", CASES)
def test_bfloat16_autocast(name, dims):
    with contract(name, "bfloat16", dims):
        m = ready(name, dims=dims)
        args = inputs(name, size=(9, 7), dims=dims)
        ref = flatten(m(*args))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = flatten(m(*args))
        for r, lo in zip(ref, low):
            assert torch.isfinite(lo).all(), f"{name}: non-finite output under bf16 autocast"
            err = (lo.float() - r).abs().max().item()
            assert err <= 0.05 * r.abs().max().item() + 0.02, f"{name}: bf16 error {err:.3g} vs scale {r.abs().max():.3g}"


@pytest.mark.parametrize("name, dims", CASES)
def test_float16_autocast(name, dims):
    """float16 under CPU autocast is finite wherever bfloat16 is: softmax/reductions kept in float32."""
    with contract(name, "float16", dims):
        m = ready(name, dims=dims)
        args = inputs(name, size=(9, 7), dims=dims)
        ref = flatten(m(*args))
        with torch.autocast("cpu", dtype=torch.float16):
            low = flatten(m(*args))
        assert [tuple(t.shape) for t in low] == [tuple(t.shape) for t in ref]
        for r, lo in zip(ref, low):
            assert torch.isfinite(lo).all(), f"{name}: non-finite output under float16 autocast"
            err = (lo.float() - r).abs().max().item()
            assert err <= 0.05 * r.abs().max().item() + 0.02, f"{name}: fp16 error {err:.3g} vs scale {r.abs().max():.3g}"


BARE_BN_ERROR = "Expected more than 1 value per channel"


@pytest.mark.parametrize("name, dims", CASES)
def test_train_batch1(name, dims):
    """train() at batch 1: forward + backward work (a BN on a pooled vector then uses its running
    statistics, documented), or a ValueError names the module and the remedy; never PyTorch's bare BN error."""
    with contract(name, "train_batch1", dims):
        for size in ((7, 9), (1, 1)):  # at 1×1 (1, 1×1×1) every BatchNorm sees one value per channel
            _train_batch1_at(name, size, dims)


def _train_batch1_at(name: str, size: tuple[int, int], dims: int = 2) -> None:
    m = ready(name, "train", dims=dims)
    args = inputs(name, batch=1, size=size, dims=dims)
    flat, rebuild = tensors_of(args)
    flat = [t.requires_grad_() for t in flat]
    try:
        out = flatten(m(*rebuild(flat)))
    except ValueError as err:
        msg = str(err)
        assert BARE_BN_ERROR not in msg, f"{name}: PyTorch's bare BatchNorm error at batch 1 in train(): {msg}"
        assert type(m).__name__ in msg, f"{name}: the batch-1 error must name the module: {msg}"
        return
    assert [tuple(t.shape) for t in out] == expected_shapes(name, m, args)
    assert all(torch.isfinite(t).all() for t in out), f"{name}: non-finite output at batch 1 in train()"
    sum(t.sum() for t in out).backward()
    assert any(t.grad is not None for t in flat) or any(p.grad is not None for p in m.parameters())


@pytest.mark.parametrize("name, dims", CASES)
def test_float64(name, dims):
    m = ready(name, dtype=torch.float64, dims=dims)
    out = flatten(m(*inputs(name, dtype=torch.float64, dims=dims)))
    assert all(o.dtype == torch.float64 and torch.isfinite(o).all() for o in out)


#: The channels-last memory format of each input rank (B×C×L and tokens have none).
MEMORY_FORMATS = {4: torch.channels_last, 5: torch.channels_last_3d}


@pytest.mark.parametrize("name, dims", CASES)
def test_channels_last(name, dims):
    args = inputs(name, size=(9, 7), dims=dims)
    ranks = {t.dim() for t in tensors_of(args)[0]}
    if dims == 1:
        pytest.skip("layout ncl (B×C×L) has no channels-last memory format")
    if len(ranks) != 1 or next(iter(ranks)) not in MEMORY_FORMATS:
        pytest.skip("layout has no 4-D input")  # tokens: channels_last does not apply
    fmt = MEMORY_FORMATS[ranks.pop()]
    with contract(name, "channels_last", dims):
        m = ready(name, dims=dims)
        ref = m(*args)
        out = m(*map_args(args, lambda t: t.contiguous(memory_format=fmt)))
        assert_close(out, ref, msg=f"{name} {fmt}")


@pytest.mark.parametrize("name, dims", CASES)
def test_eval_determinism_and_serialisation(name, dims, tmp_path):
    """eval() is deterministic and dropout defaults to 0 (the "eval_determinism" check); then the state_dict round
    trip, torch.save/torch.load of the whole module and copy.deepcopy give the same output (one module, one input)."""
    m = ready(name, dims=dims)
    args = inputs(name, dims=dims)
    with contract(name, "eval_determinism", dims):
        ref = m(*args)
        again = flatten(m(*args))
        assert all(torch.equal(x, y) for x, y in zip(flatten(ref), again)), f"{name}: eval forward is not deterministic"
        for sub in m.modules():
            if isinstance(sub, nn.modules.dropout._DropoutNd):
                assert sub.p == 0, f"{name}: dropout defaults must be 0, got {sub}"
    with contract(name, "serialisation", dims):
        fresh = build(name, seed=123, dims=dims).eval()
        fresh.load_state_dict(m.state_dict())
        assert_close(fresh(*args), ref, atol=0, rtol=0, msg="state_dict round trip")
        path = tmp_path / "m.pt"
        torch.save(m, path)
        assert_close(torch.load(path, weights_only=False)(*args), ref, atol=0, rtol=0, msg="torch.save/load")
        assert_close(copy.deepcopy(m)(*args), ref, atol=0, rtol=0, msg="deepcopy")


@pytest.mark.parametrize("name, dims", CASES)
def test_torchscript_trace(name, dims):
    with contract(name, "torchscript", dims):
        m = ready(name, dims=dims)
        traced = torch.jit.trace(m, inputs(name, dims=dims), check_trace=False, strict=False)
        other = inputs(name, seed=7, dims=dims)
        assert_close(traced(*other), m(*other), msg="torch.jit.trace")


def assert_graph_keeps_submodules(m: nn.Module, gm: torch.fx.GraphModule) -> None:
    """The FX graph reaches every submodule that holds parameters by name: a ``call_module`` node (of the child
    or of a module inside it), or a ``get_attr`` of the child (the module handed to an ``fx_leaf`` function, as
    the window, axial, halo and multipole forms do) or of its parameters.  A child the graph does not name was
    flattened away (its parameters would be copied in as constants, or lost); so the graph module must own the
    same parameters, and no tensor constant (which would not follow ``.to()`` or ``load_state_dict``)."""
    named = {n.target for n in gm.graph.nodes if n.op in ("call_module", "get_attr")}
    for child, sub in m.named_children():
        if next(sub.parameters(), None) is None:
            continue
        reached = any(t == child or t.startswith(child + ".") for t in named)
        assert reached, f"the FX graph never names the submodule {child!r} ({type(sub).__name__})"
    assert sorted(n for n, _ in gm.named_parameters()) == sorted(n for n, _ in m.named_parameters())
    constants = sorted(t for t in named if t.startswith("_tensor_constant"))
    assert not constants, f"the FX graph bakes tensors in as constants: {constants}"


@pytest.mark.parametrize("name, dims", CASES)
def test_fx_symbolic_trace(name, dims):
    with contract(name, "fx", dims):
        m = ready(name, dims=dims)
        gm = torch.fx.symbolic_trace(m)
        args = inputs(name, dims=dims)
        assert_close(gm(*args), m(*args), atol=0, rtol=0, msg="fx")
        assert_graph_keeps_submodules(m, gm)
        what, bad = bad_inputs(name, dims)[1]
        with pytest.raises(ValueError):  # input checks survive tracing
            gm(*bad)


@pytest.mark.slow
@pytest.mark.parametrize("name, dims", CASES)
def test_torch_export(name, dims):
    with contract(name, "export", dims):
        m = ready(name, dims=dims)
        args = inputs(name, dims=dims)
        ep = torch.export.export(m, args)
        assert_close(ep.module()(*args), m(*args), msg="torch.export")


@pytest.mark.slow
@pytest.mark.parametrize("name, dims", CASES)
def test_torch_compile_fullgraph(name, dims):
    torch._dynamo.reset()
    with contract(name, "compile", dims):
        m = ready(name, dims=dims)
        args = inputs(name, dims=dims)
        compiled = torch.compile(m, fullgraph=True, backend="aot_eager")
        assert_close(compiled(*args), m(*args), msg="torch.compile")


# ONNX Runtime, OpenVINO and ncnn: tests/test_deploy.py (the "onnx", "openvino" and "ncnn" checks).


@pytest.mark.parametrize("name, dims", cases([n for n in NAMES if attnzoo.info(n).identity_at_init]))
def test_identity_at_init(name, dims):
    for mode in ("train", "eval"):
        m = build(name, dims=dims).train(mode == "train")
        args = inputs(name, dims=dims)
        out = flatten(m(*args))[0]
        torch.testing.assert_close(out, args[0], atol=1e-6, rtol=0, msg=lambda s: f"{name} is not identity at init ({mode}): {s}")


def test_contract_exceptions_xfail_when_real_and_fail_when_stale(monkeypatch):
    """A declared exception turns the check's failure into an xfail, and fails the test once the check passes."""
    import dataclasses

    name, real_info = NAMES[0], attnzoo.info
    declared = dataclasses.replace(real_info(name), exceptions={"gradients": "declared here to test the mechanism"})
    monkeypatch.setattr(attnzoo, "info", lambda n: declared if n == name else real_info(n))
    with pytest.raises(pytest.xfail.Exception, match="declares 'gradients' unsupported"):
        with contract(name, "gradients"):
            raise RuntimeError("the limitation")
    with pytest.raises(pytest.fail.Exception, match="remove the exception"):
        with contract(name, "gradients"):
            pass
    with pytest.raises(RuntimeError):  # an undeclared check fails as itself
        with contract(name, "fx"):
            raise RuntimeError("a real failure")
    # a rank's own declaration (exceptions_by_dims) holds at that rank only
    declared = dataclasses.replace(declared, exceptions_by_dims={3: {"fx": "declared at 3-D to test the mechanism"}})
    with pytest.raises(pytest.xfail.Exception, match="declares 'fx' unsupported"):
        with contract(name, "fx", 3):
            raise RuntimeError("the 3-D limitation")
    for dims in (1, 2):
        with pytest.raises(RuntimeError):
            with contract(name, "fx", dims):
                raise RuntimeError("a real failure")
    with pytest.raises(pytest.fail.Exception, match="remove the exception"):
        with contract(name, "fx", 3):
            pass


def test_declared_exceptions_are_few_and_justified():
    declared = {(n, c): r for n in NAMES for c, r in attnzoo.info(n).exceptions.items()}
    for (n, c), reason in declared.items():
        assert c in CONTRACT_CHECKS and len(reason) >= 20, f"{n}: exception {c!r} needs a real reason"
    assert len(declared) <= max(3, len(NAMES) * len(CONTRACT_CHECKS) // 20), f"too many contract exceptions: {sorted(declared)}"
    for dims in (1, 3):  # a rank's own exceptions (ModuleInfo.exceptions_by_dims), counted within the rank
        names = attnzoo.list_modules(dims=dims)
        ranked = {(n, c): r for n in names for c, r in attnzoo.info(n).exceptions_by_dims.get(dims, {}).items()}
        for (n, c), reason in ranked.items():
            assert c in CONTRACT_CHECKS and len(reason) >= 20, f"{n} ({dims}-D): exception {c!r} needs a real reason"
        assert len(ranked) <= max(3, len(names) * len(CONTRACT_CHECKS) // 20), f"too many {dims}-D exceptions: {sorted(ranked)}"


SHAPE_PRESERVING = [
    n for n in NAMES
    if attnzoo.info(n).output_shape is None and not attnzoo.info(n).shape.changes
    and attnzoo.info(n).layout not in ("pyramid", "multi")
]


@pytest.mark.parametrize("name, dims", cases([n for n in SHAPE_PRESERVING if not attnzoo.info(n).identity_at_init]))
def test_modules_identity_at_init_declare_it(name, dims):
    """The converse of test_identity_at_init: a module whose output equals its input at init declares it."""
    m = build(name, dims=dims).eval()
    args = inputs(name, dims=dims)
    out = flatten(m(*args))[0]
    assert out.shape == args[0].shape
    assert not torch.allclose(out, args[0], atol=1e-6, rtol=0), f"{name} is the identity at init: declare identity_at_init"


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in ("cbam", "global_attention") if n in NAMES])
def test_inductor_compile_sample(name):
    """The contract compiles every module with the aot_eager backend (graph capture, fullgraph); here a sample
    also goes through the default inductor backend end to end (each costs tens of seconds on 2 cores)."""
    torch._dynamo.reset()
    m = ready(name)
    args = inputs(name)
    assert_close(torch.compile(m, fullgraph=True)(*args), m(*args), msg="inductor")


@pytest.mark.parametrize("name, dims", CASES)
def test_capture_records_exactly_the_declared_maps(name, dims):
    """Under ``capture_attention`` a module records exactly the keys its ``ModuleInfo.maps`` declares (patterns
    with ``*`` for numbered keys), each a finite tensor; outputs stay what they are without capture.  The
    capture also records the input's spatial sizes (any rank)."""
    import fnmatch

    m = ready(name, dims=dims)
    args = inputs(name, size=(7, 5), dims=dims)
    ref = m(*args)
    with attnzoo.capture_attention(m) as maps:
        out = m(*args)
    assert_close(out, ref, atol=1e-5, rtol=1e-4, msg=f"{name} under capture")
    got = sorted(maps.get("", {}))
    declared = attnzoo.info(name).maps
    for key in got:
        assert any(fnmatch.fnmatchcase(key, p) for p in declared), f"{name} records {key!r}, not declared in maps={declared}"
        assert torch.isfinite(maps[""][key]).all(), f"{name}: non-finite map {key!r}"
    for p in declared:
        assert any(fnmatch.fnmatchcase(key, p) for key in got), f"{name} declares maps={declared} but recorded {got}"
    if dims != 2:
        assert maps.input_sizes.get("") == tuple(args[0].shape[2:]), f"{name}: input size {maps.input_sizes}"
