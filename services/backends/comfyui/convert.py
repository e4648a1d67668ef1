"""ComfyUI's UI-format workflow (``nodes``, ``links``, ``widgets_values``) to the API format, using /object_info."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.backends.comfyui.graph import node_order
from services.backends.comfyui.workflows import TemplateError

EXPORT_API = 'save it from ComfyUI with "Export (API)" instead'
VIRTUAL = ("Reroute", "PrimitiveNode", "Note", "MarkdownNote")
WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")
CONTROL_VALUES = ("fixed", "increment", "decrement", "randomize")
MUTED, BYPASSED = 2, 4
DYNAMIC_COMBO = "COMFY_DYNAMICCOMBO_V3"
_NONE = object()  # a link that resolves to nothing (a muted source)


def is_ui_format(data: Any) -> bool:
    """True for a UI-format workflow (what ComfyUI's "Save" writes)."""
    return isinstance(data, Mapping) and isinstance(data.get("nodes"), list) and "links" in data


def _is_widget(conf: Any) -> bool:
    return isinstance(conf, list) and bool(conf) and (isinstance(conf[0], list) or conf[0] in WIDGET_TYPES)


def _entries(spec: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """(input name, its spec) for every input of a node class, in the order ComfyUI declares them."""
    inputs = spec.get("input") or {}
    order = spec.get("input_order") or {}
    out: list[tuple[str, Any]] = []
    for group in ("required", "optional"):
        declared = inputs.get(group) or {}
        out += [(name, declared[name]) for name in order.get(group) or list(declared) if name in declared]
    return out


def _default(conf: list[Any]) -> Any:
    """The value ComfyUI's frontend gives a widget the file has no value for (the default, or a list's first)."""
    options = conf[1] if len(conf) > 1 and isinstance(conf[1], Mapping) else {}
    if "default" in options:
        return options["default"]
    choices = conf[0] if isinstance(conf[0], list) else options.get("options")
    return choices[0] if isinstance(choices, list) and choices else _NONE


def widget_inputs(spec: Mapping[str, Any], values: Any) -> dict[str, Any]:
    """Widget values (a list in widget order, or a dict) as API inputs; widgets without a value get their default.

    A seed's ``control_after_generate`` value that follows it in the list is skipped; a dynamic combo's
    chosen option brings its own widgets next, named ``combo.widget`` as ComfyUI's API format expects.
    """
    queue = list(values) if isinstance(values, list) else []
    named = values if isinstance(values, Mapping) else {}
    out: dict[str, Any] = {}

    def walk(entries: list[tuple[str, Any]], prefix: str) -> None:
        for name, conf in entries:
            full = prefix + name
            dynamic = isinstance(conf, list) and conf and conf[0] == DYNAMIC_COMBO
            if not dynamic and not _is_widget(conf):
                continue
            options = conf[1] if len(conf) > 1 and isinstance(conf[1], Mapping) else {}
            if full in named:
                out[full] = named[full]
            elif queue:
                out[full] = queue.pop(0)
                control = options.get("control_after_generate") or name in ("seed", "noise_seed")
                if queue and (control or conf[0] in ("INT", "FLOAT")) and queue[0] in CONTROL_VALUES:
                    queue.pop(0)
            elif dynamic:
                out[full] = (options.get("options") or [{}])[0].get("key", _NONE)
            else:
                out[full] = _default(conf)
            if dynamic:
                chosen: Mapping[str, Any] = next((o for o in options.get("options") or [] if o.get("key") == out[full]), {})
                walk(_entries({"input": chosen.get("inputs") or {}}), full + ".")

    walk(_entries(spec), "")
    return {k: v for k, v in out.items() if v is not _NONE}


class _Converter:
    def __init__(self, ui: Mapping[str, Any], object_info: Mapping[str, Any]) -> None:
        self.info = object_info
        self.nodes = {n["id"]: n for n in ui["nodes"]}
        self.links = {ln[0]: (ln[1], ln[2]) for ln in ui.get("links") or [] if isinstance(ln, list)}
        for ln in ui.get("links") or []:
            if isinstance(ln, Mapping):  # newer files store links as objects
                self.links[ln["id"]] = (ln["origin_id"], ln["origin_slot"])

    def resolve(self, link: int | None, depth: int = 0) -> Any:
        """What feeds a link: an API link, a literal (Primitive), or _NONE (muted, or nothing)."""
        if link is None or link not in self.links or depth > 100:
            return _NONE
        node_id, slot = self.links[link]
        node = self.nodes.get(node_id)
        if node is None or node.get("mode") == MUTED:
            return _NONE
        kind = node.get("type")
        if kind == "Reroute":
            return self.resolve((node.get("inputs") or [{}])[0].get("link"), depth + 1)
        if kind == "PrimitiveNode":
            values = node.get("widgets_values") or []
            return values[0] if values else _NONE
        if node.get("mode") == BYPASSED:
            out_type = (node.get("outputs") or [])[slot].get("type") if slot < len(node.get("outputs") or []) else None
            for inp in node.get("inputs") or []:
                if inp.get("type") == out_type and inp.get("link") is not None:
                    return self.resolve(inp["link"], depth + 1)
            return _NONE
        outputs = (self.info.get(kind) or {}).get("output")
        if isinstance(outputs, list) and slot >= len(outputs):
            raise TemplateError(f"node {node_id} ({kind}) has no output {slot + 1} on that ComfyUI server (the workflow "
                                f"was made with a newer version of it); update ComfyUI or {EXPORT_API}")
        return [str(node_id), slot]

    def node(self, node: Mapping[str, Any]) -> dict[str, Any]:
        """One node in API format."""
        kind = node["type"]
        spec = self.info.get(kind)
        if not isinstance(spec, Mapping):
            raise TemplateError(f"node {node['id']} ({kind}) is not on that ComfyUI server, so its widgets cannot "
                                f"be read; install it or {EXPORT_API}")
        inputs = widget_inputs(spec, node.get("widgets_values"))
        for inp in node.get("inputs") or []:
            if inp.get("link") is None:
                continue
            value = self.resolve(inp["link"])
            if value is _NONE:
                inputs.pop(inp["name"], None)
            else:
                inputs[inp["name"]] = value
        out: dict[str, Any] = {"class_type": kind, "inputs": inputs}
        if node.get("title"):
            out["_meta"] = {"title": node["title"]}
        return out


def ui_to_api(ui: Mapping[str, Any], object_info: Mapping[str, Any]) -> dict[str, Any]:
    """The API-format graph of a UI-format workflow; TemplateError (one sentence) for what cannot be converted."""
    subgraphs = (ui.get("definitions") or {}).get("subgraphs") if isinstance(ui.get("definitions"), Mapping) else None
    if subgraphs:
        raise TemplateError(f"this workflow uses subgraphs, which Backlot cannot convert; {EXPORT_API}")
    conv = _Converter(ui, object_info)
    out: dict[str, Any] = {}
    for node in sorted(conv.nodes.values(), key=lambda n: node_order(str(n["id"]))):
        if node.get("type") in VIRTUAL or node.get("mode") in (MUTED, BYPASSED):
            continue
        out[str(node["id"])] = conv.node(node)
    if not out:
        raise TemplateError(f"this workflow has no nodes Backlot can run; {EXPORT_API}")
    return out
