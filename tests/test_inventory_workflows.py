"""Routing a user's workflow by what it needs, and the built-in templates' "one checkpoint of the right family" rule."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from backlot.services.backends.comfyui.families import family_of_metadata, family_of_name
from backlot.services.backends.comfyui.library import import_workflow
from backlot.services.backends.comfyui.workflows import TEMPLATES_DIR
from backlot.services.jobs.manager import JobError
from backlot.services.models import JobState
from tests.test_inventory import SMALL, history, running, sid, two  # noqa: F401  (two is a fixture)


def sdxl_graph(checkpoint: str) -> dict[str, Any]:
    """The built-in text-to-image graph saved by a user with their own checkpoint (API format)."""
    graph = json.loads((TEMPLATES_DIR / "text_to_image.json").read_text(encoding="utf-8"))
    graph["4"]["inputs"]["ckpt_name"] = checkpoint
    return {f"1{k}": {**v, "inputs": {i: [f"1{x[0]}", x[1]] if isinstance(x, list) else x
                                        for i, x in v["inputs"].items()}} for k, v in graph.items()}


@pytest.mark.parametrize(("name", "family"), [
    ("sd_xl_base_1.0.safetensors", "sdxl"), ("juggernautXL_v9.safetensors", "sdxl"), ("ponyDiffusionV6.safetensors",
                                                                                      "sdxl"),
    ("v1-5-pruned-emaonly.safetensors", "sd1"), ("dreamshaper_8.safetensors", "sd1"),
    ("flux1-schnell-fp8.safetensors", "flux"), ("sd3.5_large.safetensors", "sd3"),
    ("v2-1_768-ema-pruned.safetensors", "sd2"), ("model.safetensors", None)])
def test_a_checkpoints_family_is_read_from_its_name(name: str, family: str | None) -> None:
    assert family_of_name(name) == family


def test_a_checkpoints_family_is_read_from_its_metadata() -> None:
    assert family_of_metadata({"modelspec.architecture": "stable-diffusion-xl-v1-base"}) == "sdxl"
    assert family_of_metadata({"modelspec.architecture": "Flux.1-dev"}) == "flux"
    assert family_of_metadata({"ss_base_model_version": "sd_v1"}) == "sd1"
    assert family_of_metadata({"format": "pt"}) is None


async def test_a_user_workflow_goes_to_the_server_with_its_checkpoint(two: tuple[Any, Any]) -> None:
    a, b = two
    async with running(a, b) as center:
        folder = center.settings.paths.config_dir / "workflows"
        import_workflow(sdxl_graph("juggernaut_xl.safetensors"), folder, "my_look", origin="a test")
        for i in range(2):  # round-robin would alternate: the workflow's checkpoint decides
            job = await center.jobs.submit("text_to_image", f"shot {i}", {**SMALL, "workflow": "my_look"})
            assert job.route.chosen == sid(b)
            assert (sid(a), "no checkpoint juggernaut_xl.safetensors") in job.route.skipped
            done = await center.jobs.wait(job.id, 30)
            assert done.state is JobState.SUCCEEDED and len(done.attempts) == 1
    assert await history(a) == {} and len(await history(b)) == 2


async def test_a_workflow_file_nobody_can_run_is_refused_before_anything_is_sent(two: tuple[Any, Any],
                                                                                 tmp_path: Path) -> None:
    a, b = two
    path = tmp_path / "from_a_friend.json"
    path.write_text(json.dumps(sdxl_graph("dreamshaper_7.safetensors")), encoding="utf-8")
    async with running(a, b) as center:
        with pytest.raises(JobError) as caught:
            await center.jobs.submit("text_to_image", "x", {**SMALL, "workflow": str(path)})
        assert caught.value.code == "no_backend"
        assert "no server has the checkpoint dreamshaper_7.safetensors (closest: dreamshaper_8.safetensors" \
            in str(caught.value)
        assert await center.jobs.list() == []
        path.write_text(json.dumps(sdxl_graph("dreamshaper_8.safetensors")), encoding="utf-8")  # one that a has
        job = await center.jobs.submit("text_to_image", "x", {**SMALL, "workflow": str(path)})
        assert job.route.chosen == sid(a)
        assert (await center.jobs.wait(job.id, 30)).state is JobState.SUCCEEDED
    assert len(await history(a)) == 1 and await history(b) == {}


async def test_no_single_checkpoint_of_the_family_is_refused_naming_the_candidates(standin: Any) -> None:
    a = standin("comfyui", "--checkpoints", "juggernaut_xl.safetensors,realvisxl_v4.safetensors", speed=10)
    b = standin("comfyui", "--checkpoints", "v1-5-pruned-emaonly.safetensors", speed=10)
    async with running(a, b) as center:
        with pytest.raises(JobError) as caught:
            await center.jobs.submit("text_to_image", "x", dict(SMALL))
        msg = str(caught.value)
        assert ("no server has the checkpoint sd_xl_base_1.0.safetensors nor exactly one SDXL checkpoint to use "
                "instead (their SDXL checkpoints: juggernaut_xl.safetensors, realvisxl_v4.safetensors)") in msg, msg
        pinned = await center.jobs.route_explain("text_to_image", dict(SMALL), sid(b))
        assert pinned.chosen is None
        assert (sid(b), "no checkpoint sd_xl_base_1.0.safetensors, nor exactly one SDXL checkpoint to use instead "
                        "(it has none)") in pinned.skipped
        job = await center.jobs.submit("text_to_image", "x", {**SMALL, "checkpoint": "realvisxl_v4.safetensors"})
        assert job.route.chosen == sid(a)  # naming one is always possible
        assert (await center.jobs.wait(job.id, 30)).state is JobState.SUCCEEDED
    assert await history(b) == {}


async def test_a_checkpoint_named_only_in_its_metadata_stands_in(standin: Any) -> None:
    a = standin("comfyui", "--checkpoints", "house_style.safetensors,v1-5-pruned-emaonly.safetensors",
                "--model-arch", "house_style.safetensors=stable-diffusion-xl-v1-base", speed=10)
    async with running(a) as center:
        inv = center.inventory.get(sid(a))
        assert inv is not None and inv.families["checkpoints"] == {"house_style.safetensors": "sdxl",
                                                                   "v1-5-pruned-emaonly.safetensors": "sd1"}
        job = await center.jobs.submit("text_to_image", "x", dict(SMALL))
        assert "checkpoint house_style.safetensors: it has no sd_xl_base_1.0.safetensors" in job.route.reason
        assert (await center.jobs.wait(job.id, 30)).state is JobState.SUCCEEDED
    entry = next(iter((await history(a)).values()))
    assert entry["prompt"][2]["4"]["inputs"]["ckpt_name"] == "house_style.safetensors"


async def test_what_a_servers_metadata_said_is_not_asked_again_unless_fresh() -> None:
    import aiohttp
    from aiohttp import web

    from backlot.services.backends.comfyui.families import families
    from tests.helpers import serve

    asked: list[str] = []

    async def view_metadata(request: web.Request) -> web.Response:
        name = request.rel_url.query["filename"]
        asked.append(name)
        if name == "house.safetensors":
            return web.json_response({"modelspec.architecture": "stable-diffusion-xl-v1-base"})
        return web.Response(status=404)

    names = ["house.safetensors", "plain.safetensors", "v1-5-pruned-emaonly.safetensors"]
    timeout = aiohttp.ClientTimeout(total=5)
    async with serve({"/view_metadata/{folder}": view_metadata}) as url, aiohttp.ClientSession() as session:
        first = await families(session, url, "checkpoints", names, timeout, fresh=True)
        again = await families(session, url, "checkpoints", names, timeout)  # a job's adapter, after the inventory
        assert first == again == {"house.safetensors": "sdxl", "v1-5-pruned-emaonly.safetensors": "sd1"}
        assert sorted(asked) == ["house.safetensors", "plain.safetensors"]  # the name said the third; no repeat
        await families(session, url, "checkpoints", names, timeout, fresh=True)  # the inventory's refresh
        assert len(asked) == 4
