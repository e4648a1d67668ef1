"""The router stays synchronous and kind-agnostic: it asks each candidate kind's spec what a job needs."""
from __future__ import annotations

import ast
import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from backlot.services.backends import registry
from backlot.services.backends.comfyui.fit import ComfyUINeeds
from backlot.services.backends.spec import BackendSpec, Inventory, Needs
from backlot.services.config import load_settings
from backlot.services.jobs import router as router_module
from backlot.services.jobs.router import GIB, Router, ServiceHealth
from backlot.services.models import ServiceKind, ServiceRecord, ServiceState


def test_the_router_imports_no_backend_kind_and_never_awaits() -> None:
    tree = ast.parse(Path(router_module.__file__).read_text(encoding="utf-8"))
    imported = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    kinds = set(registry.kinds())
    assert not any(part in kinds for m in imported for part in m.split(".")), imported
    assert not any(isinstance(n, (ast.Await, ast.AsyncFunctionDef)) for n in ast.walk(tree))
    assert not inspect.iscoroutinefunction(Router.route)
    source = Path(router_module.__file__).read_text(encoding="utf-8").lower()
    assert "comfy" not in source


def test_a_new_kind_gets_inventory_routing_through_its_spec_alone() -> None:
    kind = ServiceKind("painter")

    def needs(task: str, params: Mapping[str, Any], options: Mapping[str, Any]) -> Needs | None:
        return Needs({"colours": frozenset({str(params.get("colour", "red"))})})

    unregister = registry.register(BackendSpec(kind=kind, title="Painter", tasks={"text_to_image": 0}, needs=needs))
    try:
        recs = [ServiceRecord(kind, "127.0.0.1", p, f"http://127.0.0.1:{p}", "painter", capabilities=("text_to_image",))
                for p in (1, 2, 3)]
        invs = {"painter@127.0.0.1:1": Inventory({"colours": frozenset({"red", "blue"})}),
                "painter@127.0.0.1:2": Inventory({"colours": frozenset({"teal"})})}  # :3 not read yet
        health = ServiceHealth(ServiceState.UP, 5, 0, 20 * GIB)
        router = Router(load_settings(cli={"task_backends": {"text_to_image": ["painter"]}}), lambda: recs,
                        lambda sid: health, lambda sid: 0, lambda s, t, p: (None, ""), invs.get)
        d = router.route("text_to_image", {"colour": "teal"})
        assert d.chosen == "painter@127.0.0.1:2" or d.chosen == "painter@127.0.0.1:3"
        assert ("painter@127.0.0.1:1", "no colour teal") in d.skipped
        invs["painter@127.0.0.1:3"] = Inventory({"colours": frozenset()})
        d = router.route("text_to_image", {"colour": "teals"})
        assert d.chosen is None and d.no_capable_backend and "closest: teal" in d.reason
    finally:
        unregister()


def test_unknown_folders_and_nodes_are_not_held_against_a_service() -> None:
    needs = Needs({"checkpoints": frozenset({"a.safetensors"})}, frozenset({"X"}))
    assert needs.fit(Inventory()).lacks == ()
    assert needs.fit(None).lacks == ()
    assert needs.fit(Inventory({"checkpoints": frozenset()}, frozenset())).lacks == \
        ("no checkpoint a.safetensors", "lacks node X")
    msg = needs.refusal({"s1": Inventory({"checkpoints": frozenset({"b.safetensors", "a.ckpt"})}, frozenset({"Y"}))})
    assert msg.startswith("no server has the checkpoint a.safetensors (closest: ")
    assert msg.endswith("; no server has the node X")


def test_comfyui_names_the_likely_cause_of_a_missing_node() -> None:
    needs = ComfyUINeeds({"checkpoints": frozenset({"a.safetensors"})}, frozenset({"X"}))
    assert needs.fit(Inventory({"checkpoints": frozenset()}, frozenset())).lacks == \
        ("no checkpoint a.safetensors", "lacks node X (custom node pack not installed)")
    msg = needs.refusal({"s1": Inventory({"checkpoints": frozenset({"b.safetensors", "a.ckpt"})}, frozenset({"Y"}))})
    assert "no server has the node X (custom node pack not installed)" in msg


def test_a_core_node_that_failed_to_load_is_not_called_a_custom_node_pack() -> None:
    # ImageUpscaleWithModel ships with ComfyUI (comfy_extras); a server without it failed to import it.
    needs = ComfyUINeeds({}, frozenset({"ImageUpscaleWithModel", "StandinSleep"}))
    lacks = needs.fit(Inventory({}, frozenset({"KSampler"}))).lacks
    assert lacks == ("lacks node ImageUpscaleWithModel (a core node that failed to load on that server: "
                     "see its console or log)", "lacks node StandinSleep (custom node pack not installed)")
    msg = needs.refusal({"s1": Inventory({}, frozenset({"KSampler"})), "s2": Inventory({}, frozenset())})
    assert "no server has the node ImageUpscaleWithModel (a core node that failed to load on those servers" in msg
    assert "custom node pack" not in msg.split("StandinSleep")[0]


def test_every_core_node_the_comfyui_standin_lists_is_known_as_core() -> None:
    import json

    from backlot.services.backends.comfyui.core_nodes import CORE_NODES

    listed = json.loads((Path(__file__).resolve().parent.parent / "standins" / "comfyui" / "core_nodes.json")
                        .read_text(encoding="utf-8"))
    assert set(listed) <= CORE_NODES
