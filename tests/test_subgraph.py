"""Subgraphs flattened as ComfyUI's frontend queues them, and widget values mapped by the server's input list."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from backlot.services.backends.comfyui.convert import ui_to_api, widget_inputs
from backlot.services.backends.comfyui.workflows import TemplateError
from backlot.standins.comfyui.nodes import node_specs

REAL = json.loads((Path(__file__).parent / "data" / "comfyui-0.8.0-object_info.json").read_text(encoding="utf-8"))
OUTER, INNER = "5a7b0c1e-0000-4000-8000-00000000000a", "5a7b0c1e-0000-4000-8000-00000000000b"
NEGATIVE = "low-poly, flat shader"


def _link(lid: int, origin: int, oslot: int, target: int, tslot: int, kind: str) -> dict[str, Any]:
    return {"id": lid, "origin_id": origin, "origin_slot": oslot, "target_id": target, "target_slot": tslot,
            "type": kind}


def _in(name: str, kind: str, link: int | None, widget: bool = False) -> dict[str, Any]:
    return {"name": name, "type": kind, "link": link, **({"widget": {"name": name}} if widget else {})}


def _out(kind: str = "IMAGE") -> list[dict[str, Any]]:
    return [{"name": kind, "type": kind, "links": []}]


def _sub(sid: str, name: str, nodes: list[dict[str, Any]], links: list[dict[str, Any]],
         inputs: list[tuple[str, str, list[int]]], outputs: list[tuple[str, str, list[int]]]) -> dict[str, Any]:
    return {"id": sid, "name": name, "nodes": nodes, "links": links,
            "inputs": [{"name": n, "type": t, "linkIds": ids} for n, t, ids in inputs],
            "outputs": [{"name": n, "type": t, "linkIds": ids} for n, t, ids in outputs]}


def nested_workflow() -> dict[str, Any]:
    """Blur stage (instance 10) holds a bypassed Invert and Sharpen stage (instance 5); 30 is muted, 40 bypassed."""
    sharpen = _sub(INNER, "Sharpen stage", [
        {"id": 1, "type": "ImageSharpen", "inputs": [_in("image", "IMAGE", 21)], "outputs": _out(),
         "widgets_values": [2, 1.0, 0.5]},
        {"id": 2, "type": "StandinSleep", "inputs": [_in("seconds", "FLOAT", 23, widget=True),
                                                     _in("image", "IMAGE", 22)], "outputs": _out(),
         "widgets_values": [1.0]},
    ], [_link(21, -10, 0, 1, 0, "IMAGE"), _link(22, 1, 0, 2, 1, "IMAGE"), _link(23, -10, 1, 2, 0, "FLOAT"),
        _link(24, 2, 0, -20, 0, "IMAGE")], [("image", "IMAGE", [21]), ("seconds", "FLOAT", [23])],
        [("IMAGE", "IMAGE", [24])])
    blur = _sub(OUTER, "Blur stage", [
        {"id": 2, "type": "StandinSleep", "inputs": [_in("seconds", "FLOAT", 12, widget=True),
                                                     _in("image", "IMAGE", 11)], "outputs": _out(),
         "widgets_values": [1.0]},
        {"id": 3, "type": "ImageBlur", "inputs": [_in("image", "IMAGE", 13)], "outputs": _out(),
         "widgets_values": [1, 1.0]},
        {"id": 4, "type": "ImageInvert", "mode": 4, "inputs": [_in("image", "IMAGE", 14)], "outputs": _out()},
        {"id": 5, "type": INNER, "inputs": [_in("image", "IMAGE", 15), _in("seconds", "FLOAT", 17, widget=True)],
         "outputs": _out(), "properties": {"proxyWidgets": [["-1", "seconds"]]}, "widgets_values": [9.0]},
    ], [_link(11, -10, 0, 2, 1, "IMAGE"), _link(12, -10, 1, 2, 0, "FLOAT"), _link(13, 2, 0, 3, 0, "IMAGE"),
        _link(14, 3, 0, 4, 0, "IMAGE"), _link(15, 4, 0, 5, 0, "IMAGE"), _link(16, 5, 0, -20, 0, "IMAGE"),
        _link(17, -10, 1, 5, 1, "FLOAT")], [("image", "IMAGE", [11]), ("seconds", "FLOAT", [12, 17])],
        [("IMAGE", "IMAGE", [16])])
    instance = {"type": OUTER, "outputs": _out(),
                "properties": {"proxyWidgets": [["-1", "seconds"], ["3", "sigma"], ["3", "blur_radius"]]}}
    nodes = [
        {"id": 1, "type": "EmptyImage", "outputs": _out(), "widgets_values": [64, 48, 1, 0]},
        {**instance, "id": 10, "inputs": [_in("image", "IMAGE", 1), _in("seconds", "FLOAT", None, widget=True)],
         "widgets_values": [0.2, None, 5]},  # sigma null: the inner node keeps its own 1.0
        {"id": 20, "type": "SaveImage", "inputs": [_in("images", "IMAGE", 2)], "widgets_values": ["nested"]},
        {**instance, "id": 30, "mode": 2, "inputs": [_in("image", "IMAGE", 3)], "widgets_values": [0.5, None, 1]},
        {"id": 31, "type": "StandinSleep", "inputs": [_in("image", "IMAGE", 4)], "outputs": _out(),
         "widgets_values": [0.0]},
        {"id": 40, "type": INNER, "mode": 4, "inputs": [_in("image", "IMAGE", 5)], "outputs": _out()},
        {"id": 41, "type": "PreviewImage", "inputs": [_in("images", "IMAGE", 6)]},
    ]
    links = [[1, 1, 0, 10, 0, "IMAGE"], [2, 10, 0, 20, 0, "IMAGE"], [3, 1, 0, 30, 0, "IMAGE"],
             [4, 30, 0, 31, 0, "IMAGE"], [5, 1, 0, 40, 0, "IMAGE"], [6, 40, 0, 41, 0, "IMAGE"]]
    return {"nodes": nodes, "links": links, "definitions": {"subgraphs": [blur, sharpen]}, "version": 0.4}


def test_nested_subgraphs_flatten_to_path_ids() -> None:
    """Promoted values reach two levels down, a bypassed inner node passes its image on, a muted instance is gone."""
    assert ui_to_api(nested_workflow(), node_specs([])) == {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 48, "batch_size": 1, "color": 0}},
        "10:2": {"class_type": "StandinSleep", "inputs": {"seconds": 0.2, "image": ["1", 0]}},
        "10:3": {"class_type": "ImageBlur", "inputs": {"blur_radius": 5, "sigma": 1.0, "image": ["10:2", 0]}},
        "10:5:1": {"class_type": "ImageSharpen", "inputs": {  # 10:4 is bypassed: Blur's image goes straight on
            "sharpen_radius": 2, "sigma": 1.0, "alpha": 0.5, "image": ["10:3", 0]}},
        "10:5:2": {"class_type": "StandinSleep", "inputs": {"seconds": 0.2, "image": ["10:5:1", 0]}},
        "20": {"class_type": "SaveImage", "inputs": {"filename_prefix": "nested", "images": ["10:5:2", 0]}},
        "31": {"class_type": "StandinSleep", "inputs": {"seconds": 0.0}},  # fed by muted 30: the link is dropped
        "41": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},  # through bypassed instance 40
    }


def test_an_unlinked_promoted_input_without_a_value_keeps_the_inner_widget() -> None:
    ui = nested_workflow()
    ui["nodes"][1]["widgets_values"] = []
    api = ui_to_api(ui, node_specs([]))
    # 10:5:2 is linked to the outer input, so instance 5's own 9.0 is not used either
    assert api["10:2"]["inputs"]["seconds"] == api["10:5:2"]["inputs"]["seconds"] == 1.0
    assert api["10:3"]["inputs"] == {"blur_radius": 1, "sigma": 1.0, "image": ["10:2", 0]}


def test_files_without_proxy_widgets_promote_in_subgraph_input_order() -> None:
    """Frontends before proxyWidgets saved one value per subgraph input that feeds a widget, matched by name."""
    ui = nested_workflow()
    del ui["nodes"][1]["properties"]
    ui["nodes"][1]["inputs"] = [_in("seconds", "FLOAT", None, widget=True), _in("image", "IMAGE", 1)]
    ui["links"][0] = [1, 1, 0, 10, 1, "IMAGE"]
    ui["nodes"][1]["widgets_values"] = [0.3]
    api = ui_to_api(ui, node_specs([]))
    assert api["10:2"]["inputs"] == {"seconds": 0.3, "image": ["1", 0]}


def test_a_subgraph_that_contains_itself_is_refused() -> None:
    ui = nested_workflow()
    ui["definitions"]["subgraphs"][1]["nodes"].append({"id": 9, "type": OUTER, "inputs": [], "outputs": []})
    with pytest.raises(TemplateError, match=r'^subgraph "Blur stage" contains itself$'):
        ui_to_api(ui, node_specs([]))


def test_control_value_only_where_the_frontend_adds_one() -> None:
    """A seed-like INT has one (its spec says so, or, saying nothing, it is named seed); a FLOAT without it has none."""
    spec = {"input": {"required": {"seed": ["INT", {}], "value": ["INT", {"control_after_generate": True}],
                                   "strength": ["FLOAT", {}], "mode": ["STRING", {}]}},
            "input_order": {"required": ["seed", "value", "strength", "mode"]}}
    assert widget_inputs(spec, [1, "fixed", 2, "randomize", 0.5, "fixed"]) == {
        "seed": 1, "value": 2, "strength": 0.5, "mode": "fixed"}


def test_moonvalley_video_to_video_values_stay_in_their_widgets() -> None:
    """Its seed has no control widget on 0.8.0; the file, saved when it had one, keeps a stale "randomize"."""
    prompt = "A powerful white stallion gallops"
    values = [prompt, NEGATIVE, 3711400033, "randomize", "Motion Transfer", 100]
    assert widget_inputs(REAL["MoonvalleyVideo2VideoNode"], values) == {
        "prompt": prompt, "negative_prompt": NEGATIVE, "seed": 3711400033,
        "steps": 33,  # no number was saved for it: the default, not the word
        "control_type": "Motion Transfer", "motion_intensity": 100}


def test_stability_ultra_force_input_has_no_widget_slot() -> None:
    """negative_prompt is a socket only (forceInput), so 0.5 is image_denoise's; hidden inputs take nothing."""
    values = ["a portrait", "1:1", "cinematic", 1985902675, "randomize", 0.5]
    assert widget_inputs(REAL["StabilityStableImageUltraNode"], values) == {
        "prompt": "a portrait", "aspect_ratio": "1:1", "style_preset": "cinematic", "seed": 1985902675,
        "image_denoise": 0.5}


def test_a_widget_turned_into_a_socket_keeps_its_slot() -> None:
    ui = {"nodes": [
        {"id": 1, "type": "PrimitiveInt", "outputs": _out("INT"), "widgets_values": [7, "fixed"]},
        {"id": 2, "type": "KSampler", "inputs": [_in("seed", "INT", 1, widget=True)],
         "widgets_values": [5, "randomize", 20, 8, "euler", "normal", 1]}],
        "links": [[1, 1, 0, 2, 0, "INT"]]}
    assert ui_to_api(ui, REAL)["2"]["inputs"] == {
        "seed": ["1", 0], "steps": 20, "cfg": 8, "sampler_name": "euler", "scheduler": "normal", "denoise": 1}


def test_a_list_value_is_wrapped_so_it_is_not_read_as_a_link() -> None:
    spec = {"input": {"required": {"tags": ["COMBO", {"options": ["a", "b"], "multiselect": True}]}},
            "input_order": {"required": ["tags"]}}
    assert widget_inputs(spec, [["a", "b"]]) == {"tags": {"__value__": ["a", "b"]}}


async def test_a_nested_subgraph_runs_on_the_standin_with_progress_on_inner_nodes(standin: Any) -> None:
    """The flattened prompt runs; the server reports progress and outputs under the path ids, and they count."""
    import aiohttp

    from backlot.services.backends.comfyui.follow import BELOW_DONE, ProgressTracker
    from backlot.services.backends.comfyui.library import fetch_object_info

    sp = standin("comfyui", speed=10)
    async with aiohttp.ClientSession() as session:
        api = ui_to_api(nested_workflow(), await fetch_object_info(session, sp.url))
        tracker = ProgressTracker(api)
        reported: set[str] = set()
        async with session.ws_connect(sp.url + "/ws?clientId=subgraph-test") as ws:
            async with session.post(sp.url + "/prompt", json={"prompt": api, "client_id": "subgraph-test"}) as resp:
                assert resp.status == 200, await resp.text()
                pid = (await resp.json())["prompt_id"]
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                frame = json.loads(msg.data)
                data = frame.get("data") or {}
                if data.get("prompt_id") != pid:
                    continue
                if frame["type"] == "progress_state":
                    tracker.on_state(data["nodes"])
                    reported.update(data["nodes"])
                elif frame["type"] in ("execution_success", "execution_error"):
                    assert frame["type"] == "execution_success", data
                    break
        async with session.get(f"{sp.url}/history/{pid}") as resp:
            outputs = (await resp.json())[pid]["outputs"]
    assert {"10:2", "10:3", "10:5:1", "10:5:2"} <= reported <= set(api)  # inner nodes, by path, as they run
    assert set(api) - reported == {"31"}  # it feeds no output, so ComfyUI never runs it
    ran = sum(w for n, w in tracker.weights.items() if n in reported)
    assert tracker.fraction() == pytest.approx(min(BELOW_DONE, ran / sum(tracker.weights.values())))
    assert set(outputs) == {"20", "41"}
