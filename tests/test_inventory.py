"""Model-aware routing across real ComfyUI stand-ins: skip who lacks a model or node, refuse what nobody has."""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from backlot.services.backends.spec import Inventory
from backlot.services.config import load_settings
from backlot.services.control import ControlCenter
from backlot.services.events import JobUpdated
from backlot.services.jobs.manager import JobError
from backlot.services.models import JobState

SMALL = {"width": 64, "height": 64, "steps": 2}


def settings_for(*urls: str, **extra: Any) -> Any:
    return load_settings(cli={"urls": list(urls), "scan_default_ports": False, "discovery_budget": 1.0,
                              "health_interval": 0.3, "health_timeout": 1.0, **extra})


@contextlib.asynccontextmanager
async def running(*servers: Any, **extra: Any) -> AsyncIterator[ControlCenter]:
    """A started control center watching ``servers``, stopped afterwards."""
    center = ControlCenter(settings_for(*(s.url for s in servers), **extra))
    await center.start()
    try:
        yield center
    finally:
        await center.stop()


def sid(sp: Any) -> str:
    return f"comfyui@127.0.0.1:{sp.port}"


async def history(sp: Any) -> Any:
    async with aiohttp.ClientSession() as s, s.get(sp.url + "/history") as r:
        return await r.json()


@pytest.fixture
def two(standin: Any) -> tuple[Any, Any]:
    """Two ComfyUI servers with different checkpoints; the second lacks the StandinSleep node pack."""
    return (standin("comfyui", "--checkpoints", "dreamshaper_8.safetensors,sd_xl_base_1.0.safetensors", speed=10),
            standin("comfyui", "--checkpoints", "juggernaut_xl.safetensors", "--without-nodes", "StandinSleep",
                    speed=10))


async def test_inventory_is_read_at_discovery(two: tuple[Any, Any]) -> None:
    a, b = two
    async with running(a, b) as center:
        inv_a, inv_b = center.inventory.get(sid(a)), center.inventory.get(sid(b))
        assert inv_a is not None and inv_b is not None
        assert inv_a.models["checkpoints"] == {"dreamshaper_8.safetensors", "sd_xl_base_1.0.safetensors"}
        assert inv_b.models["checkpoints"] == {"juggernaut_xl.safetensors"}
        assert "RealESRGAN_x4plus.pth" in inv_a.models["upscale_models"]
        assert inv_a.nodes is not None and "StandinSleep" in inv_a.nodes and "KSampler" in inv_a.nodes
        assert inv_b.nodes is not None and "StandinSleep" not in inv_b.nodes


async def test_a_pinned_checkpoint_goes_to_the_server_that_has_it(two: tuple[Any, Any]) -> None:
    a, b = two
    async with running(a, b) as center:
        for i in range(3):  # round-robin would alternate: every one still goes to the server with the model
            job = await center.jobs.submit("text_to_image", f"shot {i}", {**SMALL, "checkpoint": "juggernaut_xl.safetensors"})
            assert job.route.chosen == sid(b)
            assert (sid(a), "no checkpoint juggernaut_xl.safetensors") in job.route.skipped
            assert f"skipped {sid(a)}: no checkpoint juggernaut_xl.safetensors" in job.route.explain()
            done = await center.jobs.wait(job.id, 30)
            assert done.state is JobState.SUCCEEDED and done.routed_to == sid(b) and len(done.attempts) == 1


async def test_a_checkpoint_nobody_has_is_refused_before_anything_is_sent(two: tuple[Any, Any]) -> None:
    a, b = two
    async with running(a, b) as center:
        with pytest.raises(JobError) as caught:
            await center.jobs.submit("text_to_image", "x", {**SMALL, "checkpoint": "dreamshaper_7.safetensors"})
        assert caught.value.code == "no_backend"
        msg = str(caught.value)
        assert "no server has the checkpoint dreamshaper_7.safetensors" in msg
        assert "closest: dreamshaper_8.safetensors" in msg
        assert await center.jobs.list() == []
    assert await history(a) == {} and await history(b) == {}


async def test_a_missing_node_class_skips_the_server(two: tuple[Any, Any]) -> None:
    a, b = two
    async with running(a, b) as center:
        d = await center.jobs.route_explain("text_to_image", {"workflow": "standin_progress"})
        assert d.chosen == sid(a)
        assert (sid(b), "lacks node StandinSleep (custom node pack not installed)") in d.skipped
        pinned = await center.jobs.route_explain("text_to_image", {"workflow": "standin_progress"}, sid(b))
        assert pinned.chosen is None and pinned.no_capable_backend
        assert "no server has the node StandinSleep (custom node pack not installed)" in pinned.reason


async def test_the_checkpoint_setting_pins_a_template(two: tuple[Any, Any]) -> None:
    a, b = two
    async with running(a, b, comfyui_checkpoints={"text_to_image": "dreamshaper_8.safetensors"}) as center:
        job = await center.jobs.submit("text_to_image", "x", dict(SMALL))
        assert job.route.chosen == sid(a)
        assert "checkpoint dreamshaper_8.safetensors (the comfyui_checkpoints setting)" in job.route.reason
        named = await center.jobs.route_explain("text_to_image", {**SMALL, "checkpoint": "dreamshaper_8.safetensors"})
        assert "checkpoint dreamshaper_8.safetensors (named by the job)" in named.reason
        done = await center.jobs.wait(job.id, 30)
        assert done.state is JobState.SUCCEEDED and done.routed_to == sid(a)


async def test_the_default_checkpoint_is_preferred_and_the_one_of_its_family_stands_in(two: tuple[Any, Any]) -> None:
    a, b = two
    async with running(a, b) as center:
        d = await center.jobs.route_explain("text_to_image", dict(SMALL))
        assert d.chosen == sid(a)  # it has the template's sd_xl_base_1.0; b would have to use another
        assert "checkpoint sd_xl_base_1.0.safetensors (text_to_image's default)" in d.reason
        pinned = await center.jobs.route_explain("text_to_image", dict(SMALL), sid(b))
        assert pinned.chosen == sid(b)
        assert ("checkpoint juggernaut_xl.safetensors: it has no sd_xl_base_1.0.safetensors (text_to_image's "
                "default), so its one SDXL checkpoint") in pinned.reason
        said: list[str] = []
        center.bus.subscribe(lambda e: said.append(str(e.job.status.message)), JobUpdated)
        job = await center.jobs.submit("text_to_image", "x", dict(SMALL), requested_backend=sid(b))
        done = await center.jobs.wait(job.id, 30)
        assert done.state is JobState.SUCCEEDED
        assert any("sd_xl_base_1.0.safetensors is not on this server: using its one SDXL checkpoint "
                   "juggernaut_xl.safetensors" in m for m in said), said
        entry = next(iter((await history(b)).values()))
        assert entry["prompt"][2]["4"]["inputs"]["ckpt_name"] == "juggernaut_xl.safetensors"


async def test_a_capability_failure_reads_the_inventory_again(standin: Any) -> None:
    a = standin("comfyui", "--checkpoints", "juggernaut_xl.safetensors", speed=10)
    center = ControlCenter(settings_for(a.url))
    await center.start()
    try:
        real = center.inventory.get(sid(a))
        assert real is not None
        # What Backlot read earlier: the model was there (since deleted on the server).
        center.inventory._known[sid(a)] = Inventory({**real.models, "checkpoints": frozenset({"gone.safetensors"})},
                                                    real.nodes)
        job = await center.jobs.submit("text_to_image", "x", {**SMALL, "checkpoint": "gone.safetensors"})
        assert job.route.chosen == sid(a)
        done = await center.jobs.wait(job.id, 30)
        assert done.state is JobState.FAILED and done.attempts[0].outcome == "failed: capability"
        await center.inventory.keeper.wait()
        fresh = center.inventory.get(sid(a))
        assert fresh is not None and fresh.models["checkpoints"] == {"juggernaut_xl.safetensors"}
        with pytest.raises(JobError, match="closest: juggernaut_xl.safetensors|they have: juggernaut_xl"):
            await center.jobs.submit("text_to_image", "x", {**SMALL, "checkpoint": "gone.safetensors"})
    finally:
        await center.stop()


async def test_reconnect_and_discover_read_what_a_server_has_again(standin: Any) -> None:
    a = standin("comfyui", "--checkpoints", "juggernaut_xl.safetensors", speed=10)
    async with running(a) as center:
        real = center.inventory.get(sid(a))
        assert real is not None
        for ask in (lambda: center.reconnect(sid(a)), lambda: center.discover()):
            # What Backlot read earlier (the server has had a model installed since).
            center.inventory._known[sid(a)] = Inventory({**real.models, "checkpoints": frozenset()}, real.nodes)
            asked = ask()
            if asyncio.iscoroutine(asked):
                await asked
            await center.inventory.keeper.wait()
            fresh = center.inventory.get(sid(a))
            assert fresh is not None and fresh.models["checkpoints"] == {"juggernaut_xl.safetensors"}
