"""ComfyUI 0.8's POST /prompt validation, with its exact error and node_errors shapes."""
from __future__ import annotations

import copy
import traceback
from typing import Any

Error = dict[str, Any]


class PromptError(Exception):
    """A whole-prompt error (HTTP 400 with ``error`` and empty ``node_errors``)."""

    def __init__(self, type_: str, message: str, details: str) -> None:
        super().__init__(message)
        self.body = {"error": {"type": type_, "message": message, "details": details, "extra_info": {}},
                     "node_errors": {}}


def _err(type_: str, message: str, details: str, **extra: Any) -> Error:
    return {"type": type_, "message": message, "details": details, "extra_info": extra}


def _is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[1], int) and not isinstance(value[1], bool)


def _convert(kind: str, value: Any) -> Any:
    if kind == "INT":
        return int(value)
    if kind == "FLOAT":
        return float(value)
    if kind == "STRING":
        return str(value)
    if kind == "BOOLEAN":
        return bool(value)
    return value


class Validator:
    """Validates one prompt against the node specs; results are memoised per node like ComfyUI's."""

    def __init__(self, prompt: dict[str, Any], specs: dict[str, dict[str, Any]]) -> None:
        self.prompt = prompt
        self.specs = specs
        self.validated: dict[str, tuple[bool, list[Error]]] = {}

    def node(self, node_id: str) -> tuple[bool, list[Error]]:
        """Validate a node and, through its links, everything upstream of it."""
        if node_id in self.validated:
            return self.validated[node_id]
        node = self.prompt[node_id]
        spec = self.specs[node["class_type"]]
        inputs = node.get("inputs", {})
        required = spec["input"].get("required", {})
        optional = spec["input"].get("optional", {})
        errors: list[Error] = []
        valid = True
        for name, config in [*required.items(), *optional.items()]:
            if name not in inputs:
                if name in required:
                    errors.append(_err("required_input_missing", "Required input is missing", name, input_name=name))
                    valid = False
                continue
            value = inputs[name]
            kind = config[0]
            opts = config[1] if len(config) > 1 else {}
            if _is_link(value):
                ok, link_errors = self._link(node_id, name, kind, config, value)
                errors += link_errors
                valid = valid and ok
                continue
            try:
                converted = _convert(kind, value) if isinstance(kind, str) else value
            except (TypeError, ValueError) as ex:
                errors.append(_err("invalid_input_type", f"Failed to convert an input value to a {kind} value",
                                   f"{name}, {value}, {ex}", input_name=name, input_config=config,
                                   received_value=value, exception_message=str(ex)))
                valid = False
                continue
            if isinstance(kind, list):
                if value not in kind and str(value).rsplit(" [", 1)[0] not in kind:
                    errors.append(_err("value_not_in_list", "Value not in list", f"{name}: '{value}' not in {kind}",
                                       input_name=name, input_config=config, received_value=value))
                    valid = False
                continue
            if "min" in opts and converted < opts["min"]:
                errors.append(_err("value_smaller_than_min", f"Value {converted} smaller than min of {opts['min']}",
                                   name, input_name=name, input_config=config, received_value=converted))
                valid = False
            elif "max" in opts and converted > opts["max"]:
                errors.append(_err("value_bigger_than_max", f"Value {converted} bigger than max of {opts['max']}",
                                   name, input_name=name, input_config=config, received_value=converted))
                valid = False
            else:
                inputs[name] = converted
        self.validated[node_id] = (valid, errors)
        return valid, errors

    def _link(self, node_id: str, name: str, kind: Any, config: list[Any], link: list[Any]) -> tuple[bool, list[Error]]:
        source_id = str(link[0])
        try:
            source = self.prompt[source_id]
            outputs = self.specs[source["class_type"]]["output"]
            produced = outputs[link[1]]
        except (KeyError, IndexError) as ex:
            return False, [_err("exception_during_validation", "Exception when validating node", str(ex),
                                exception_type=type(ex).__name__,
                                traceback=traceback.format_tb(ex.__traceback__))]
        if isinstance(kind, str) and kind != "*" and produced != kind:
            return False, [_err("return_type_mismatch", "Return type mismatch between linked nodes",
                                f"{name}, received_type({produced}) mismatch input_type({kind})",
                                input_name=name, input_config=config, received_type=produced,
                                linked_node=link)]
        ok, _ = self.node(source_id)
        return ok, []


def validate_prompt(prompt: Any, specs: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], list[str], dict[str, Any]]:
    """Return (the prompt with converted values, output ids to run, node_errors), or raise PromptError.

    A prompt whose output nodes all fail raises PromptError with ``node_errors`` filled in, like
    ComfyUI; when some outputs are good the prompt runs those and reports the others' errors.
    """
    if not isinstance(prompt, dict):
        raise PromptError("invalid_prompt", "Cannot execute because the prompt is not an object.", "")
    for node_id, node in prompt.items():
        if not isinstance(node, dict) or "class_type" not in node:
            raise PromptError("invalid_prompt", "Cannot execute because a node is missing the class_type property.",
                              f"Node ID '#{node_id}'")
        if node["class_type"] not in specs:
            raise PromptError("invalid_prompt", f"Cannot execute because node {node['class_type']} does not exist.",
                              f"Node ID '#{node_id}'")
        if not isinstance(node.get("inputs", {}), dict):
            raise PromptError("invalid_prompt", "Cannot execute because a node's inputs are not an object.",
                              f"Node ID '#{node_id}'")
    outputs = [nid for nid, node in prompt.items() if specs[node["class_type"]].get("output_node")]
    if not outputs:
        raise PromptError("prompt_no_outputs", "Prompt has no outputs", "")
    prompt = copy.deepcopy(prompt)  # validation converts values; history keeps what the client sent
    validator = Validator(prompt, specs)
    good: list[str] = []
    failures: list[tuple[str, list[Error]]] = []
    node_errors: dict[str, Any] = {}
    for out in outputs:
        ok, reasons = validator.node(out)
        if ok:
            good.append(out)
            continue
        if reasons:
            failures.append((out, reasons))
        for nid, (valid, errs) in validator.validated.items():
            if not valid and errs:
                entry = node_errors.setdefault(nid, {"errors": errs, "dependent_outputs": [],
                                                     "class_type": prompt[nid]["class_type"]})
                entry["dependent_outputs"].append(out)
    if not good:
        details = "\n".join(f"{e['message']}: {e['details']}" for _, errs in failures for e in errs)
        err = PromptError("prompt_outputs_failed_validation", "Prompt outputs failed validation", details)
        err.body["node_errors"] = node_errors
        raise err
    return prompt, good, node_errors
