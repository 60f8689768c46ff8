"""State dicts are public API: checkpoints saved by attnzoo 0.1.0 load and give the same outputs, and every
registered module's state-dict keys and shapes at default arguments match the committed snapshot."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

import attnzoo
from attnzoo.dev import snapshot_text, state_dict_shapes
from helpers import assert_close, flatten

DATA = Path(__file__).parent / "data"
GOLDEN = DATA / "checkpoints_0.1.0.pt"
SNAPSHOT = DATA / "state_dict_keys.json"


def write_snapshot() -> None:
    """Rewrite every entry of the snapshot (``python tests/test_checkpoints.py``): only for a deliberate, migrated
    change of existing modules.  A new module's entry comes from ``python -m attnzoo.dev sync``."""
    SNAPSHOT.write_text(snapshot_text({name: state_dict_shapes(name) for name in attnzoo.list_modules()}))


_golden = torch.load(GOLDEN, weights_only=True)


@pytest.mark.parametrize("name", sorted(_golden))
def test_checkpoint_from_0_1_0_loads_and_matches(name):
    """Built with the 0.1.0 arguments (deprecated names included), loaded strictly from the 0.1.0 state dict
    (renamed keys migrate through ``_version``), the module returns what 0.1.0 returned."""
    case = _golden[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        m = attnzoo.create(name, case["channels"], **case["kwargs"]).double()
    sd = case["state_dict"]
    missing, unexpected = m.load_state_dict(sd, strict=True)
    assert not missing and not unexpected
    m.eval()
    with torch.no_grad():
        out = m(*case["args"])
    assert_close(out, case["output"], atol=1e-10, rtol=1e-10, msg=f"{name} differs from 0.1.0")
    assert all(torch.isfinite(t).all() for t in flatten(out))


def test_snapshot_covers_the_registry():
    snap = json.loads(SNAPSHOT.read_text())
    missing = sorted(set(attnzoo.list_modules()) - set(snap))
    stale = sorted(set(snap) - set(attnzoo.list_modules()))
    assert not missing, f"no state-dict snapshot for {missing}: run `python -m attnzoo.dev sync` and commit"
    assert not stale, f"snapshot has unregistered modules {stale}"


@pytest.mark.parametrize("name", attnzoo.list_modules())
def test_state_dict_keys_and_shapes_are_stable(name):
    snap = json.loads(SNAPSHOT.read_text())
    if name not in snap:
        pytest.fail(f"no snapshot for {name}: run `python -m attnzoo.dev sync` and commit tests/data/state_dict_keys.json")
    assert state_dict_shapes(name) == snap[name], (
        f"{name}: state-dict keys/shapes changed; keep old checkpoints loading (_version + _load_from_state_dict) "
        "and regenerate the snapshot"
    )


if __name__ == "__main__":
    write_snapshot()
    print(f"wrote {SNAPSHOT}")
