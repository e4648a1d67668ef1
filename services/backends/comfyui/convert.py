"""ComfyUI's UI-format workflow (``nodes``, ``links``, ``widgets_values``) to the API format, using /object_info."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.backends.comfyui.workflows import TemplateError

EXPORT_API = 'save it from ComfyUI with "Export (API)" instead'
VIRTUAL = ("Reroute", "PrimitiveNode", "Note", "MarkdownNote")
WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")
CONTROL_VALUES = ("fixed", "increment", "decrement", "randomize")
MUTED, BYPASSED = 2, 4
_NONE = object()  # a link that resolves to nothing (a muted source)


def is_ui_format(data: Any) -> bool:
    """True for a UI-format workflow (what ComfyUI's "Save" writes)."""
    return isinstance(data, Mapping) and isinstance(data.get("nodes"), list) and "links" in data


def _widgets(spec: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """(input name, its spec) for the inputs the UI shows as widgets, in widget order."""
    inputs = spec.get("input", {})
    order = spec.get("input_order", {})
    out: list[tuple[str, Any]] = []
    for group in ("required", "optional"):
        declared = inputs.get(group) or {}
        for name in order.get(group) or list(declared):
            conf = declared.get(name)
            if isinstance(conf, list) and conf and (isinstance(conf[0], list) or conf[0] in WIDGET_TYPES):
                out.append((name, conf))
    return out


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
        return [str(node_id), slot]

    def node(self, node: Mapping[str, Any]) -> dict[str, Any]:
        """One node in API format."""
        kind = node["type"]
        spec = self.info.get(kind)
        if not isinstance(spec, Mapping):
            raise TemplateError(f"node {node['id']} ({kind}) is not on that ComfyUI server, so its widgets cannot "
                                f"be read; install it or {EXPORT_API}")
        inputs: dict[str, Any] = {}
        values = node.get("widgets_values")
        if isinstance(values, Mapping):
            inputs.update({k: v for k, v in values.items() if k in dict(_widgets(spec))})
        else:
            queue = list(values or [])
            for name, conf in _widgets(spec):
                if not queue:
                    break
                inputs[name] = queue.pop(0)
                options = conf[1] if len(conf) > 1 and isinstance(conf[1], Mapping) else {}
                control = options.get("control_after_generate") or name in ("seed", "noise_seed")
                if queue and (control or conf[0] in ("INT", "FLOAT")) and queue[0] in CONTROL_VALUES:
                    queue.pop(0)
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
    for node in sorted(conv.nodes.values(), key=lambda n: n["id"]):
        if node.get("type") in VIRTUAL or node.get("mode") in (MUTED, BYPASSED):
            continue
        out[str(node["id"])] = conv.node(node)
    if not out:
        raise TemplateError(f"this workflow has no nodes Backlot can run; {EXPORT_API}")
    return out
