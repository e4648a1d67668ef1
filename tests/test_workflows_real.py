"""Importing real ComfyUI workflows: the official UI-format templates (from PyPI) and ComfyUI's SDXL API graph."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import main
from backlot.services.backends.comfyui.convert import EXPORT_API, is_ui_format, ui_to_api
from backlot.services.backends.comfyui.graph import is_link
from backlot.services.backends.comfyui.infer import infer_bindings
from backlot.services.backends.comfyui.library import fetch_object_info, to_api
from backlot.services.backends.comfyui.workflows import TemplateError
from backlot.standins import launcher
from tests.real_workflows import comfyui_templates, sdxl_api_graph  # noqa: F401 - fixtures

SDXL_PROMPT = "evening sunset scenery blue sky nature, glass bottle with a galaxy in it"


@pytest.fixture(scope="module")
def comfy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, Any]]]:
    """One ComfyUI stand-in process for the module: its URL and its /object_info as Backlot reads it."""
    import asyncio

    sp = launcher.start("comfyui", data=tmp_path_factory.mktemp("comfyui"), timeout=90.0)

    async def read() -> dict[str, Any]:
        async with aiohttp.ClientSession() as session:
            return await fetch_object_info(session, sp.url)
    try:
        yield sp.url, asyncio.run(read())
    finally:
        sp.stop()


def _load(folder: Path, name: str) -> Any:
    return json.loads((folder / name).read_text(encoding="utf-8"))


def _sdxl_refiner_api(folder: Path, info: dict[str, Any]) -> dict[str, Any]:
    return ui_to_api(_load(folder, "sdxl_simple_example.json"), info)


def test_sdxl_refiner_template_converts(comfyui_templates: Path, comfy: Any) -> None:  # noqa: F811
    api = _sdxl_refiner_api(comfyui_templates, comfy[1])
    # Notes, MarkdownNote and the four Primitive nodes are gone; their values sit in the inputs they fed.
    assert {k: v["class_type"] for k, v in api.items()} == {
        "4": "CheckpointLoaderSimple", "5": "EmptyLatentImage", "6": "CLIPTextEncode", "7": "CLIPTextEncode",
        "10": "KSamplerAdvanced", "11": "KSamplerAdvanced", "12": "CheckpointLoaderSimple", "15": "CLIPTextEncode",
        "16": "CLIPTextEncode", "17": "VAEDecode", "19": "SaveImage"}
    # The seed's "randomize" is skipped, so nothing after it shifts; steps and end_at_step come from Primitives.
    assert api["10"]["inputs"] == {
        "add_noise": "enable", "noise_seed": 721897303308196, "steps": 25, "cfg": 8, "sampler_name": "euler",
        "scheduler": "normal", "start_at_step": 0, "end_at_step": 20, "return_with_leftover_noise": "enable",
        "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}
    assert api["11"]["inputs"] == {
        "add_noise": "disable", "noise_seed": 0, "steps": 25, "cfg": 8, "sampler_name": "euler",
        "scheduler": "normal", "start_at_step": 20, "end_at_step": 10000, "return_with_leftover_noise": "disable",
        "model": ["12", 0], "positive": ["15", 0], "negative": ["16", 0], "latent_image": ["10", 0]}
    assert api["6"]["inputs"] == api["15"]["inputs"] | {"clip": ["4", 1]} == {"text": SDXL_PROMPT, "clip": ["4", 1]}
    assert api["7"]["inputs"] == {"text": "text, watermark", "clip": ["4", 1]}
    assert api["16"]["inputs"] == {"text": "text, watermark", "clip": ["12", 1]}
    assert api["5"]["inputs"] == {"width": 1024, "height": 1024, "batch_size": 1}
    assert api["17"]["inputs"] == {"samples": ["11", 0], "vae": ["12", 2]}
    assert api["19"]["inputs"] == {"filename_prefix": "ComfyUI", "images": ["17", 0]}
    assert api["12"]["inputs"] == {"ckpt_name": "sd_xl_refiner_1.0.safetensors"}


def _assert_sdxl_refiner_bindings(found: Any) -> None:
    b = found.bindings
    assert b["prompt"] == [("6", "text"), ("15", "text")] and b["negative"] == [("7", "text"), ("16", "text")]
    assert b["seed"] == [("10", "noise_seed"), ("11", "noise_seed")]
    assert b["steps"] == [("10", "steps"), ("11", "steps")] and b["cfg"] == [("10", "cfg"), ("11", "cfg")]
    assert (b["width"], b["height"], b["batch"]) == ([("5", "width")], [("5", "height")], [("5", "batch_size")])
    assert b["checkpoint"] == [("4", "ckpt_name")] and b["prefix"] == [("19", "filename_prefix")]
    assert found.task == "text_to_image" and found.missing == [] and found.models == ["checkpoint"]
    assert found.notes == ["only the first checkpoint loader (node 4) is bound to checkpoint"]


def test_sdxl_refiner_template_bindings(comfyui_templates: Path, comfy: Any) -> None:  # noqa: F811
    _assert_sdxl_refiner_bindings(infer_bindings(_sdxl_refiner_api(comfyui_templates, comfy[1])))


def test_image_sdxl_simple_template_converts_with_bindings(comfyui_templates: Path, comfy: Any) -> None:  # noqa: F811
    api = ui_to_api(_load(comfyui_templates, "image_sdxl_simple.json"), comfy[1])
    assert sorted(api, key=int) == ["7", "10", "11", "12", "13", "14", "15"]
    assert api["12"] == {"class_type": "KSampler", "inputs": {
        "seed": 812045847300606, "steps": 25, "cfg": 7, "sampler_name": "dpmpp_2m", "scheduler": "karras",
        "denoise": 1, "model": ["15", 0], "positive": ["10", 0], "negative": ["11", 0], "latent_image": ["13", 0]}}
    assert api["14"]["inputs"] == {"samples": ["12", 0], "vae": ["15", 2]}  # widgets_values null: links only
    found = infer_bindings(api)
    b = found.bindings
    assert b["prompt"] == [("10", "text")] and b["negative"] == [("11", "text")]
    assert api["10"]["inputs"]["text"].startswith("a giant classical marble statue")
    assert b["seed"] == [("12", "seed")] and b["steps"] == [("12", "steps")] and b["cfg"] == [("12", "cfg")]
    assert b["denoise"] == [("12", "denoise")] and b["width"] == [("13", "width")] and b["batch"] == [("13", "batch_size")]
    assert b["checkpoint"] == [("15", "ckpt_name")] and b["prefix"] == [("7", "filename_prefix")]
    assert found.task == "text_to_image" and found.missing == [] and found.notes == []


async def test_converted_sdxl_refiner_is_refused_only_for_its_missing_model(comfyui_templates: Path,  # noqa: F811
                                                                            comfy: Any) -> None:
    """The stand-in checks a prompt like ComfyUI: the refiner checkpoint is not there, and nothing else is wrong."""
    api = _sdxl_refiner_api(comfyui_templates, comfy[1])
    async with aiohttp.ClientSession() as session, session.post(comfy[0] + "/prompt", json={"prompt": api}) as resp:
        body = await resp.json()
    assert resp.status == 400, body
    assert {nid: [e["type"] for e in ne["errors"]] for nid, ne in body["node_errors"].items()} == {
        "12": ["value_not_in_list"]}
    assert body["node_errors"]["12"]["errors"][0]["extra_info"]["input_name"] == "ckpt_name"


def _check_links_and_inputs(api: dict[str, Any], info: dict[str, Any]) -> None:
    """Every link points at an existing node's existing output, and every required input has a value."""
    for nid, node in api.items():
        spec = info[node["class_type"]]
        for name, value in node["inputs"].items():
            if is_link(value):
                assert value[0] in api and value[1] < len(info[api[value[0]]["class_type"]]["output"]), (nid, name)
        missing = set(spec["input"].get("required") or {}) - set(node["inputs"])
        assert not missing, (nid, node["class_type"], missing)


def test_every_template_converts_or_is_refused_in_one_sentence(comfyui_templates: Path, comfy: Any) -> None:  # noqa: F811
    converted, subgraphed, refused = [], [], {"not on that ComfyUI server": 0, "has no output": 0}
    for path in sorted(comfyui_templates.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if not is_ui_format(data):  # the package's index files
            continue
        try:
            api = ui_to_api(data, comfy[1])
        except TemplateError as err:
            said = str(err)
            assert said.endswith(EXPORT_API) and "\n" not in said and said.count(". ") == 0, said
            (reason,) = [r for r in refused if r in said]
            refused[reason] += 1
            continue
        _check_links_and_inputs(api, comfy[1])
        converted.append(path.name)
        if (data.get("definitions") or {}).get("subgraphs"):
            subgraphed.append(path.name)
    assert {"sdxl_simple_example.json", "image_sdxl_simple.json"} <= set(converted)
    assert len(converted) >= 25 and len(converted) + sum(refused.values()) == 644
    assert len(subgraphed) >= 10, subgraphed  # subgraphs expanded, each inner node checked like the rest


def test_api_format_sdxl_graph_is_read_as_is(comfyui_templates: Path, comfy: Any, tmp_path: Path,  # noqa: F811
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """An "Export (API)" file of the SDXL refiner graph imports without a server, with the same bindings."""
    api = _sdxl_refiner_api(comfyui_templates, comfy[1])
    assert to_api(api, None) == (api, False)
    path = tmp_path / "sdxl_refiner.json"
    path.write_text(json.dumps(api), encoding="utf-8")
    assert main.main(["workflows", "import", str(path)]) == 0
    assert "converted" not in capsys.readouterr().out
    assert main.main(["workflows", "show", "sdxl_refiner", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["bindings"]["prompt"] == [["6", "text"], ["15", "text"]] and shown["task"] == "text_to_image"
    assert shown["models"] == {"checkpoints": ["sd_xl_base_1.0.safetensors", "sd_xl_refiner_1.0.safetensors"]}


def test_comfyuis_own_sdxl_api_graph(sdxl_api_graph: Path) -> None:  # noqa: F811
    """ComfyUI's tests/inference/graphs/default_graph_sdxl1_0.json: read as is; the zeroed negative is not the prompt."""
    data = json.loads(sdxl_api_graph.read_text(encoding="utf-8"))
    api, converted = to_api(data, None)
    assert api == data and not converted
    found = infer_bindings(api)
    b = found.bindings
    assert b["prompt"] == [("6", "text"), ("17", "text")] and b["negative"] == [("20", "text")]
    assert b["seed"] == [("10", "noise_seed"), ("14", "noise_seed")] and b["steps"] == [("10", "steps"), ("14", "steps")]
    assert b["cfg"] == [("10", "cfg"), ("14", "cfg")] and b["checkpoint"] == [("4", "ckpt_name")]
    assert (b["width"], b["height"], b["batch"]) == ([("5", "width")], [("5", "height")], [("5", "batch_size")])
    assert b["prefix"] == [("13", "filename_prefix")] and found.task == "text_to_image" and found.missing == []


async def test_a_ui_format_file_runs_converted_on_the_fly(comfyui_templates: Path, standin: Any,
                                                          tmp_path: Path) -> None:
    """``--param workflow=FILE`` with a file saved from ComfyUI's UI: converted for the job, not saved as the user's."""
    import shutil

    from backlot.services.jobs.manager import JobError
    from backlot.services.models import JobState
    from tests.test_inventory import history, running

    src = tmp_path / "image_sdxl_simple.json"
    shutil.copy(comfyui_templates / "image_sdxl_simple.json", src)
    before = src.read_bytes()
    sp = standin("comfyui", speed=10)
    async with running(sp) as center:
        params = {"workflow": str(src), "width": 64, "height": 48, "steps": 2, "seed": 11}
        job = await center.jobs.submit("text_to_image", "a lighthouse at dusk", params)
        converted = Path(job.params["workflow"])
        assert converted.parent == center.settings.data_path / "converted"
        assert converted.name.startswith("image_sdxl_simple-") and converted.suffix == ".json"
        assert not (center.settings.paths.config_dir / "workflows").exists()  # not added to the user's workflows
        done = await center.jobs.wait(job.id, 30)
        assert done.state is JobState.SUCCEEDED, done.status
    assert src.read_bytes() == before
    (entry,) = (await history(sp)).values()
    graph = entry["prompt"][2]
    sampler = next(n["inputs"] for n in graph.values() if n["class_type"] == "KSampler")
    latent = next(n["inputs"] for n in graph.values() if n["class_type"] == "EmptyLatentImage")
    texts = [n["inputs"]["text"] for n in graph.values() if n["class_type"] == "CLIPTextEncode"]
    assert (sampler["steps"], sampler["seed"], latent["width"], latent["height"]) == (2, 11, 64, 48)
    assert "a lighthouse at dusk" in texts
    async with running() as center:  # no ComfyUI to read the node list from: refused, nothing recorded
        with pytest.raises(JobError) as caught:
            await center.jobs.submit("text_to_image", "x", {"workflow": str(src)})
        assert caught.value.code == "invalid"
        assert str(caught.value) == ("image_sdxl_simple.json is a UI-format workflow and no ComfyUI is running to "
                                     f"convert it; start ComfyUI, or {EXPORT_API}")
        assert [j.id for j in await center.jobs.list()] == [job.id]  # the same home: only the first job
