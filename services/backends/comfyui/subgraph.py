"""Expanding a UI-format workflow's subgraphs into one flat list of nodes, the way ComfyUI's frontend queues it.

Follows the frontend's graph-to-prompt code (``ExecutableNodeDTO.resolveInput``/``resolveOutput`` and
``SubgraphNode.getInnerNodes``): an inner node is named by its path (``"68:25"`` is node 25 inside instance 68,
``"5:7:2"`` one level deeper), links are followed through subgraph inputs and outputs, Reroutes and bypassed
nodes, and a promoted widget's value comes from the instance. Pure functions, no I/O.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from backlot.services.backends.comfyui.workflows import TemplateError

MUTED, BYPASSED = 2, 4
SUBGRAPH_INPUT, SUBGRAPH_OUTPUT = -10, -20  # the ids of a subgraph's input and output nodes in its links
PROMOTED_INPUT = "-1"  # a proxyWidgets entry naming a subgraph input rather than an inner node
SKIPPED_PROXIES = ("control_after_generate",)  # proxy entries that hold no value ComfyUI reads
NOT_RUN = ("Reroute", "PrimitiveNode", "Note", "MarkdownNote")  # virtual nodes: the frontend never queues them


@dataclass(frozen=True)
class Link:
    """An output of a node in the flat graph: ``[node_id, slot]`` in the API format."""

    node_id: str
    slot: int


@dataclass(frozen=True)
class Value:
    """A literal an input takes instead of a link (a Primitive's or a promoted widget's value)."""

    value: Any


Source = Link | Value


@dataclass(frozen=True)
class FlatNode:
    """A node the prompt runs: its path id, its saved UI form, and what feeds it from outside its own widgets."""

    id: str
    node: Mapping[str, Any]
    widget_values: Mapping[str, Any]  # promoted widgets set on an instance, by widget name
    inputs: Mapping[str, Source]  # a linked input's source; a link that leads nowhere leaves the widget as saved


@dataclass
class _Graph:
    """The root graph or one subgraph definition: nodes and links by id."""

    nodes: dict[str, Mapping[str, Any]]
    links: dict[int, tuple[str, int]]  # link id -> (origin node id, origin slot)
    inputs: list[Mapping[str, Any]] = field(default_factory=list)
    outputs: list[Mapping[str, Any]] = field(default_factory=list)


@dataclass
class _Node:
    """One node at one path (the frontend's ExecutableNodeDTO)."""

    id: str
    node: Mapping[str, Any]
    graph: _Graph
    instance: _Node | None  # the subgraph instance this node sits in
    promoted: dict[str, Any] = field(default_factory=dict)  # for an instance: subgraph input name -> value
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # for an instance: inner id -> widget values


def _graph(data: Mapping[str, Any]) -> _Graph:
    links: dict[int, tuple[str, int]] = {}
    for ln in data.get("links") or []:
        if isinstance(ln, list) and len(ln) >= 3:
            links[ln[0]] = (str(ln[1]), ln[2])
        elif isinstance(ln, Mapping):  # newer files and every subgraph store links as objects
            links[ln["id"]] = (str(ln["origin_id"]), ln["origin_slot"])
    return _Graph({str(n["id"]): n for n in data.get("nodes") or []}, links,
                  list(data.get("inputs") or []), list(data.get("outputs") or []))


def _order(node_id: str) -> tuple[int, int, str]:
    """Numeric ids in numeric order, then the rest by name."""
    return (0, int(node_id), "") if node_id.lstrip("-").isdigit() else (1, 0, node_id)


def _compatible(a: Any, b: Any) -> bool:
    """LiteGraph's isValidConnection: equal, a wildcard, or comma-separated type lists that share a type."""
    if not a or not b or a == "*" or b == "*" or a == b:
        return True
    return bool({t.strip().upper() for t in str(a).split(",")} & {t.strip().upper() for t in str(b).split(",")})


class _Flattener:
    def __init__(self, ui: Mapping[str, Any]) -> None:
        definitions = ui.get("definitions")
        subgraphs = definitions.get("subgraphs") if isinstance(definitions, Mapping) else None
        self.definitions: dict[str, Mapping[str, Any]] = {s["id"]: s for s in subgraphs or [] if isinstance(s, Mapping)}
        self.graphs: dict[str, _Graph] = {sid: _graph(s) for sid, s in self.definitions.items()}
        self.nodes: dict[str, _Node] = {}

    def expand(self, graph: _Graph, instance: _Node | None, within: tuple[str, ...]) -> None:
        """Register every node of a graph under its path, descending into the instances that run."""
        prefix = f"{instance.id}:" if instance else ""
        for nid in sorted(graph.nodes, key=_order):
            node = graph.nodes[nid]
            entry = _Node(prefix + nid, node, graph, instance)
            self.nodes[entry.id] = entry
            kind = node.get("type")
            if kind not in self.graphs or node.get("mode") in (MUTED, BYPASSED):
                continue  # a muted or bypassed instance's inner nodes never run
            if kind in within:
                raise TemplateError(f"subgraph \"{self.definitions[kind].get('name') or kind}\" contains itself")
            self._promote(entry, self.graphs[kind], instance.overrides.get(nid, {}) if instance else {})
            self.expand(self.graphs[kind], entry, (*within, kind))

    def _promote(self, entry: _Node, inner: _Graph, from_outside: Mapping[str, Any]) -> None:
        """An instance's widget values: ``widgets_values`` in ``properties.proxyWidgets`` order, null = unchanged.

        Files saved before proxyWidgets existed list one value per subgraph input that feeds a widget, in order.
        """
        node = entry.node
        proxies = (node.get("properties") or {}).get("proxyWidgets")
        if isinstance(proxies, list):
            entries = [(str(p[0]), str(p[1])) for p in proxies if isinstance(p, list) and len(p) == 2]
        else:
            entries = [(PROMOTED_INPUT, str(i.get("name"))) for i in inner.inputs if self._feeds_widget(inner, i)]
        values = node.get("widgets_values")
        for (target, widget), value in zip(entries, values if isinstance(values, list) else [], strict=False):
            if value is None or widget in SKIPPED_PROXIES or widget.startswith("$$"):
                continue
            if target == PROMOTED_INPUT:
                entry.promoted[widget] = value
            else:
                entry.overrides.setdefault(target, {})[widget] = value
        entry.promoted.update(from_outside)  # the enclosing instance's proxies name this instance's widgets

    @staticmethod
    def _feeds_widget(inner: _Graph, sub_input: Mapping[str, Any]) -> bool:
        for link_id in sub_input.get("linkIds") or []:
            for node in inner.nodes.values():
                if any(i.get("link") == link_id and i.get("widget") for i in node.get("inputs") or []):
                    return True
        return False

    def resolve_input(self, at: _Node, slot: int, want: Any, seen: set[tuple[str, str, int]]) -> Source | None:
        """What feeds input ``slot`` of a node: a link to a node that runs, a literal, or None (nothing)."""
        self._visit(seen, at, "in", slot)
        inputs = at.node.get("inputs") or []
        link_id = inputs[slot].get("link") if slot < len(inputs) else None
        if link_id is None or link_id not in at.graph.links:
            return None
        origin, origin_slot = at.graph.links[link_id]
        if origin == str(SUBGRAPH_INPUT) and at.instance is not None:
            return self._from_instance(at.instance, origin_slot, want, seen)
        prefix = at.id.rsplit(":", 1)[0] + ":" if at.instance else ""
        source = self.nodes.get(prefix + origin)
        return None if source is None else self.resolve_output(source, origin_slot, want, seen)

    def _from_instance(self, instance: _Node, slot: int, want: Any, seen: set[tuple[str, str, int]]) -> Source | None:
        """A subgraph input: the instance's link there, else its promoted widget value, else nothing."""
        graph = self.graphs[instance.node["type"]]
        if slot >= len(graph.inputs):
            return None
        name = graph.inputs[slot].get("name")
        outer = next((i for i, inp in enumerate(instance.node.get("inputs") or []) if inp.get("name") == name), None)
        if outer is not None and (instance.node["inputs"][outer].get("link") is not None):
            return self.resolve_input(instance, outer, want, seen)
        return Value(instance.promoted[name]) if name in instance.promoted else None

    def resolve_output(self, at: _Node, slot: int, want: Any, seen: set[tuple[str, str, int]]) -> Source | None:
        """Where output ``slot`` of a node really comes from, for an input of type ``want``."""
        self._visit(seen, at, "out", slot)
        node = at.node
        kind = node.get("type")
        if node.get("mode") == BYPASSED:
            index = self._bypass_slot(node, slot, want)
            return None if index is None else self.resolve_input(at, index, want, seen)
        if kind in self.graphs and node.get("mode") != MUTED:
            return self._subgraph_output(at, slot, want, seen)
        if kind == "Reroute":
            return self.resolve_input(at, 0, want, seen)
        if kind == "PrimitiveNode":
            values = node.get("widgets_values") or []
            return Value(values[0]) if values else None
        if kind in NOT_RUN:
            return None
        return Link(at.id, slot)  # a muted node too: the converter drops links to nodes it did not emit

    def _subgraph_output(self, at: _Node, slot: int, want: Any, seen: set[tuple[str, str, int]]) -> Source | None:
        graph = self.graphs[at.node["type"]]
        link_ids = (graph.outputs[slot].get("linkIds") or []) if slot < len(graph.outputs) else []
        if not link_ids or link_ids[0] not in graph.links:
            return None
        origin, origin_slot = graph.links[link_ids[0]]
        if origin == str(SUBGRAPH_INPUT):  # an input wired straight to an output
            return self._from_instance(at, origin_slot, want, seen)
        inner = self.nodes.get(f"{at.id}:{origin}")
        return None if inner is None else self.resolve_output(inner, origin_slot, want, seen)

    @staticmethod
    def _bypass_slot(node: Mapping[str, Any], slot: int, want: Any) -> int | None:
        """The input a bypassed node passes to output ``slot``: the same slot, else the first of the type."""
        inputs = node.get("inputs") or []
        outputs = node.get("outputs") or []
        if want in ("*", "", None):
            return slot if slot < len(inputs) else (0 if inputs else None)
        out_type = outputs[slot].get("type") if slot < len(outputs) else None
        if slot < len(inputs) and _compatible(inputs[slot].get("type"), out_type) \
                and _compatible(inputs[slot].get("type"), want):
            return slot
        exact = [i for i, inp in enumerate(inputs) if inp.get("type") == want]
        if exact:
            return exact[0]
        loose = [i for i, inp in enumerate(inputs)
                 if _compatible(inp.get("type"), out_type) and _compatible(inp.get("type"), want)]
        return loose[0] if loose else None

    @staticmethod
    def _visit(seen: set[tuple[str, str, int]], at: _Node, side: str, slot: int) -> None:
        key = (at.id, side, slot)
        if key in seen:
            raise TemplateError(f"the links into node {at.id} ({at.node.get('type')}) go round in a loop")
        seen.add(key)


def flatten(ui: Mapping[str, Any]) -> list[FlatNode]:
    """The nodes a UI-format workflow queues, subgraphs expanded, each input resolved to what really feeds it.

    Muted, bypassed, virtual and instance nodes are not listed; their effect is in the inputs of the rest.
    """
    flat = _Flattener(ui)
    flat.expand(_graph(ui), None, ())
    out: list[FlatNode] = []
    for entry in flat.nodes.values():
        node = entry.node
        if node.get("type") in NOT_RUN or node.get("type") in flat.graphs or node.get("mode") in (MUTED, BYPASSED):
            continue
        inputs: dict[str, Source] = {}
        for slot, inp in enumerate(node.get("inputs") or []):
            source = flat.resolve_input(entry, slot, inp.get("type"), set())
            if source is not None:
                inputs[inp["name"]] = source
        own = node["id"]
        widget_values = entry.instance.overrides.get(str(own), {}) if entry.instance else {}
        out.append(FlatNode(entry.id, node, widget_values, inputs))
    return out
