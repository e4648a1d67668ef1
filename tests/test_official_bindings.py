"""What import makes of every official ComfyUI 0.8.0 template: the prompt never dropped, a task that fits, inputs.

Each template converts with the real server's node list (tests/data), then goes through ``import_workflow``
as ``backlot workflows import`` does.
"""
from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from test_official_templates import _classes, _templates

from backlot.services.backends.comfyui.convert import ui_to_api
from backlot.services.backends.comfyui.graph import nodes
from backlot.services.backends.comfyui.infer import UPSCALE_NODES
from backlot.services.backends.comfyui.library import import_workflow
from backlot.services.backends.comfyui.workflows import TemplateError, load_templates

OBJECT_INFO = Path(__file__).parent / "data" / "comfyui-0.8.0-object_info.json"


def _has_text_input(api: Mapping[str, Any], info: Mapping[str, Any]) -> bool:
    """A literal multi-line text anywhere in the graph: something a person writes a prompt into."""
    for _, cls, inputs in nodes(api):
        declared = {**(info[cls]["input"].get("optional") or {}), **(info[cls]["input"].get("required") or {})}
        for name, value in inputs.items():
            conf = declared.get(name)
            if isinstance(value, str) and conf and conf[0] == "STRING" and len(conf) > 1 and conf[1].get("multiline"):
                return True
    return False


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every template with known node classes imported: name -> (api graph, Template) or the refusal sentence."""
    info = json.loads(OBJECT_INFO.read_text(encoding="utf-8"))
    folder = tmp_path_factory.mktemp("workflows")
    out: dict[str, Any] = {"info": info, "graphs": {}, "refused": {}}
    for name, ui in _templates():
        if not _classes(ui) <= set(info):
            continue
        stem = name.removesuffix(".json").replace(" ", "_")
        out["graphs"][stem] = ui_to_api(ui, info)
        try:
            import_workflow(ui, folder, stem, object_info=info, origin=name)
        except TemplateError as err:
            out["refused"][stem] = str(err)
    out["templates"] = load_templates(folder, source=str(folder))
    return out


def test_only_workflows_that_make_no_image_video_or_sound_are_refused(imported: dict[str, Any]) -> None:
    refused = imported["refused"]
    for stem, said in refused.items():
        assert "which no Backlot task takes" in said and "\n" not in said, (stem, said)
    makes = Counter(said.split(" makes ")[1].split(" (")[0] if " makes " in said else "nothing" for said in refused.values())
    print(f"refused at import: {len(refused)} ({dict(makes)})")
    assert set(makes) <= {"3D models", "chat or LLM text", "SVG vector files"}, refused
    assert set(refused) | set(imported["templates"]) == set(imported["graphs"])


def test_the_prompt_is_bound_or_a_prompt_is_refused(imported: dict[str, Any]) -> None:
    info, graphs = imported["info"], imported["graphs"]
    with_text = {stem: t for stem, t in imported["templates"].items() if _has_text_input(graphs[stem], info)}
    bound = [stem for stem, t in with_text.items() if "prompt" in t.bindings]
    print(f"templates with a text input: {len(with_text)}, prompt bound: {len(bound)} "
          f"({100 * len(bound) / len(with_text):.1f}%)")
    assert len(bound) >= 0.95 * len(with_text), sorted(set(with_text) - set(bound))
    for stem, template in imported["templates"].items():
        node, field = (template.bindings.get("prompt") or [(None, None)])[0]
        if node is None:  # a job that gives a prompt is refused before it is queued
            assert not template.schema().takes_prompt, stem
            continue
        assert isinstance(template.workflow[node]["inputs"][field], str), (stem, node, field)
        assert "system" not in field and "negative" not in field, (stem, field)
        assert template.schema().takes_prompt


def test_tasks_fit_what_the_templates_do(imported: dict[str, Any]) -> None:
    tasks = Counter(t.task for t in imported["templates"].values())
    print(f"tasks guessed: {dict(tasks)}")
    for stem, template in imported["templates"].items():
        classes = {cls for _, cls, _ in nodes(template.workflow)}
        if template.task == "upscale":
            assert classes & set(UPSCALE_NODES), stem  # never a guess without an upscaler
        if "LoadVideo" in classes:
            assert "input_video" in template.bindings, stem
        if template.task == "video_to_video":
            assert template.schema().inputs[0].media == "video", stem
    assert tasks["image_edit"] >= 30 and tasks["video_to_video"] >= 5


def test_first_and_last_frame_graphs_take_two_pictures(imported: dict[str, Any]) -> None:
    flf = {stem: t for stem, t in imported["templates"].items() if "end_image" in t.bindings}
    assert len(flf) >= 3, sorted(flf)
    for stem, template in flf.items():
        assert "input_image" in template.bindings and template.bindings["input_image"] != template.bindings[
            "end_image"], stem
        assert [i.name for i in template.schema().inputs][:2] == ["image", "end_image"], stem
