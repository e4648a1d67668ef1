"""Every official ComfyUI 0.8.0 template converts to a prompt that fits the real server's node list.

The templates come from the four ``comfyui-workflow-templates-media-*`` packages ComfyUI 0.8.0 installs (the
test extra pins them); ``tests/data/comfyui-0.8.0-object_info.json`` is ``/object_info`` of a real 0.8.0 server.
"""
from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from backlot.services.backends.comfyui.convert import DYNAMIC_COMBO, is_ui_format, ui_to_api
from backlot.services.backends.comfyui.graph import is_link
from backlot.services.backends.comfyui.subgraph import NOT_RUN
from backlot.services.backends.comfyui.workflows import TemplateError

OBJECT_INFO = Path(__file__).parent / "data" / "comfyui-0.8.0-object_info.json"
PACKAGES = ("comfyui_workflow_templates_media_api", "comfyui_workflow_templates_media_image",
            "comfyui_workflow_templates_media_other", "comfyui_workflow_templates_media_video")
# A tutorial that asks the user to wire the image to the SaveImage node: the file itself leaves it unlinked.
UNWIRED = {"gsc_starter_1.json": ["76 (SaveImage): required input images is missing"]}
ANY_TYPES = ("*", "", "COMFY_MATCHTYPE_V3", "COMFY_AUTOGROW_V3", DYNAMIC_COMBO)  # types the server matches loosely


@pytest.fixture(scope="module")
def object_info() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(OBJECT_INFO.read_text(encoding="utf-8"))
    return data


def _templates() -> Iterator[tuple[str, Any]]:
    """(file name, workflow) for every UI-format template of the four packages."""
    for package in PACKAGES:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            pytest.skip(f"{package} is not installed (pip install -e '.[test]')")
        for path in sorted(Path(next(iter(spec.submodule_search_locations)), "templates").glob("*.json")):
            data = json.loads(path.read_text(encoding="utf-8"))
            if is_ui_format(data):  # not the index files
                yield path.name, data


def _classes(ui: Mapping[str, Any]) -> set[str]:
    """The node classes a workflow uses, in its root graph and in every subgraph definition."""
    subgraphs = (ui.get("definitions") or {}).get("subgraphs") or []
    ids = {s["id"] for s in subgraphs}
    nodes = [*ui["nodes"], *(n for s in subgraphs for n in s.get("nodes") or [])]
    return {n["type"] for n in nodes} - ids - set(NOT_RUN)


def _type_fits(received: Any, wanted: Any) -> bool:
    """ComfyUI's validate_node_input: equal, a wildcard, a combo for a combo, or type lists that share a type."""
    if isinstance(wanted, list) or wanted == "COMBO":
        return isinstance(received, list) or received in ("COMBO", "*")
    if received == wanted or received in ANY_TYPES or wanted in ANY_TYPES:
        return True
    return bool({t.strip() for t in str(received).split(",")} & {t.strip() for t in str(wanted).split(",")})


def _value_fits(value: Any, conf: list[Any]) -> bool:
    kind = conf[0]
    options = conf[1] if len(conf) > 1 and isinstance(conf[1], Mapping) else {}
    if kind in ("INT", "FLOAT"):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "STRING":
        return isinstance(value, str)
    if kind == "BOOLEAN":
        return isinstance(value, bool)
    if isinstance(kind, list) or kind == "COMBO":  # membership in the server's file lists is not checked
        choices = kind if isinstance(kind, list) else options.get("options") or []
        if options.get("multiselect"):
            return isinstance(value, Mapping) and isinstance(value.get("__value__"), list)
        return isinstance(value, str) or any(type(value) is type(c) for c in choices)
    return True


def structural_problems(api: Mapping[str, Any], info: Mapping[str, Any]) -> list[str]:
    """What is wrong with a prompt against /object_info: missing inputs, bad links, widget values of a wrong type."""
    problems = []
    for nid, node in api.items():
        spec = info[node["class_type"]]
        declared = {**(spec["input"].get("optional") or {}), **(spec["input"].get("required") or {})}
        for name in spec["input"].get("required") or {}:
            if name not in node["inputs"]:
                problems.append(f"{nid} ({node['class_type']}): required input {name} is missing")
        for name, value in node["inputs"].items():
            conf = declared.get(name)
            if is_link(value):
                source = api.get(value[0])
                outputs = info[source["class_type"]]["output"] if source else []
                if source is None or value[1] >= len(outputs):
                    problems.append(f"{nid}.{name}: link {value} points at nothing")
                elif conf is not None and not _type_fits(outputs[value[1]], conf[0]):
                    problems.append(f"{nid}.{name}: {outputs[value[1]]} does not fit {conf[0]}")
            elif conf is not None and not _value_fits(value, conf):
                problems.append(f"{nid} ({node['class_type']}).{name}: {value!r} does not fit {conf[0]}")
    return problems


def test_every_official_template_with_known_classes_converts_and_fits(object_info: dict[str, Any]) -> None:
    total, absent, converted, fits = 0, 0, 0, 0
    refused: dict[str, str] = {}
    wrong: dict[str, list[str]] = {}
    for name, ui in _templates():
        total += 1
        if not _classes(ui) <= set(object_info):
            absent += 1
            continue
        try:
            api = ui_to_api(ui, object_info)
        except TemplateError as err:
            said = str(err)
            assert "\n" not in said and said.count(". ") == 0, said
            refused[name] = said
            continue
        converted += 1
        problems = structural_problems(api, object_info)
        if not problems:
            fits += 1
        elif problems != UNWIRED.get(name):
            wrong[name] = problems
    known = total - absent
    print(f"\n{total} templates, {known} with every node class on the server ({absent} skipped), "
          f"{converted} converted, {fits} pass the structural check ({len(UNWIRED)} left unwired by its author)")
    for name, said in refused.items():
        print(f"  refused {name}: {said}")
    for name, problems in wrong.items():
        print(f"  wrong {name}: {problems[:3]}")
    assert total == 220 and known == 187  # the pinned packages and the recorded server
    assert converted >= 0.95 * known, refused
    assert not wrong, wrong
    assert fits == converted - len(UNWIRED)
