"""ComfyUI's UI-format workflow (``nodes``, ``links``, ``widgets_values``) to the API format, using /object_info."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from backlot.services.backends.comfyui.subgraph import FlatNode, Link, Value, flatten
from backlot.services.backends.comfyui.workflows import TemplateError

EXPORT_API = 'save it from ComfyUI with "Export (API)" instead'
WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")
CONTROL_VALUES = ("fixed", "increment", "decrement", "randomize", "increment-wrap")
DYNAMIC_COMBO = "COMFY_DYNAMICCOMBO_V3"
_NONE = object()  # a widget with no value and no default


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


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _has_control(name: str, conf: list[Any], options: Mapping[str, Any]) -> bool:
    """True where ComfyUI's frontend adds a ``control_after_generate`` widget (its value is saved next).

    An INT gets one when its spec says so, or, when the spec says nothing, when it is named seed or noise_seed
    (``useIntWidget``); a FLOAT or a combo only when its spec says so.
    """
    if conf[0] == "INT":
        return bool(options.get("control_after_generate", name in ("seed", "noise_seed")))
    return bool(options.get("control_after_generate"))


def widget_inputs(spec: Mapping[str, Any], values: Any) -> dict[str, Any]:
    """Widget values (a list in widget order, or a dict) as API inputs; widgets without a value get their default.

    The list follows the server's ``input_order`` (required, then optional); an input made a socket still has
    its slot, a ``forceInput`` one has none. A control value (``randomize``…) follows a widget only where the
    frontend gives it one, and is skipped; a number widget whose saved value is not a number (a file saved
    with an older layout of the node) gets its default rather than a value ComfyUI would refuse. A dynamic
    combo's chosen option brings its own widgets next, named ``combo.widget`` as ComfyUI's API format expects.
    A list value is wrapped as ``{"__value__": [...]}``, as the frontend does, so it is not read as a link.
    """
    queue = list(values) if isinstance(values, list) else []
    named = values if isinstance(values, Mapping) else {}
    out: dict[str, Any] = {}

    def walk(entries: list[tuple[str, Any]], prefix: str) -> None:
        for name, conf in entries:
            full = prefix + name
            dynamic = isinstance(conf, list) and conf and conf[0] == DYNAMIC_COMBO
            options = conf[1] if isinstance(conf, list) and len(conf) > 1 and isinstance(conf[1], Mapping) else {}
            if (not dynamic and not _is_widget(conf)) or options.get("forceInput"):
                continue
            if full in named:
                out[full] = named[full]
            elif queue:
                out[full] = queue.pop(0)
                if queue and _has_control(name, conf, options) and queue[0] in CONTROL_VALUES:
                    queue.pop(0)
                if conf[0] in ("INT", "FLOAT") and not _is_number(out[full]):
                    out[full] = _default(conf)  # a file saved with an older node layout: no number is there
            elif dynamic:
                out[full] = (options.get("options") or [{}])[0].get("key", _NONE)
            else:
                out[full] = _default(conf)
            if dynamic:
                choices = options.get("options") or []
                chosen: Mapping[str, Any] = next((o for o in choices if o.get("key") == out[full]), {})
                walk(_entries({"input": chosen.get("inputs") or {}}), full + ".")

    walk(_entries(spec), "")
    return {k: {"__value__": v} if isinstance(v, list) else v for k, v in out.items() if v is not _NONE}


def _node(flat: FlatNode, object_info: Mapping[str, Any]) -> dict[str, Any]:
    """One node in API format: its widgets, then what its links resolved to."""
    node = flat.node
    kind = node["type"]
    spec = object_info.get(kind)
    if not isinstance(spec, Mapping):
        raise TemplateError(f"node {flat.id} ({kind}) is not on that ComfyUI server, so its widgets cannot "
                            f"be read; install it or {EXPORT_API}")
    inputs = widget_inputs(spec, node.get("widgets_values"))
    inputs.update((k, v) for k, v in flat.widget_values.items() if k in inputs)
    for name, source in flat.inputs.items():
        inputs[name] = source.value if isinstance(source, Value) else [source.node_id, source.slot]
    out: dict[str, Any] = {"class_type": kind, "inputs": inputs}
    if node.get("title"):
        out["_meta"] = {"title": node["title"]}
    return out


def _check_output(api: Mapping[str, Any], source: Link, object_info: Mapping[str, Any]) -> None:
    kind = api[source.node_id]["class_type"]
    outputs = (object_info.get(kind) or {}).get("output")
    if isinstance(outputs, list) and source.slot >= len(outputs):
        raise TemplateError(f"node {source.node_id} ({kind}) has no output {source.slot + 1} on that ComfyUI server "
                            f"(the workflow was made with a newer version of it); update ComfyUI or {EXPORT_API}")


def ui_to_api(ui: Mapping[str, Any], object_info: Mapping[str, Any]) -> dict[str, Any]:
    """The API-format graph of a UI-format workflow; TemplateError (one sentence) for what cannot be converted.

    Subgraphs are expanded as ComfyUI's frontend does it (inner nodes named ``instance:node``); a link to a node
    that is not in the prompt (a muted one) is dropped, as the frontend drops it.
    """
    flat = flatten(ui)
    out = {f.id: _node(f, object_info) for f in flat}
    for f in flat:
        for name, source in f.inputs.items():
            if not isinstance(source, Link):
                continue
            if source.node_id in out:
                _check_output(out, source, object_info)
            else:
                del out[f.id]["inputs"][name]
    if not out:
        raise TemplateError(f"this workflow has no nodes Backlot can run; {EXPORT_API}")
    return out
