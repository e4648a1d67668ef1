"""ComfyUI's validation and execution errors as sentences a film-maker can act on."""
from __future__ import annotations

from typing import Any


def _node(node_id: str, class_type: str | None) -> str:
    return f"node {node_id} ({class_type})" if class_type else f"node {node_id}"


def _one(err: dict[str, Any]) -> str:
    kind = err.get("type", "")
    info = err.get("extra_info") or {}
    name = info.get("input_name") or err.get("details") or "an input"
    config = info.get("input_config") or [None, {}]
    opts = config[1] if len(config) > 1 and isinstance(config[1], dict) else {}
    got = info.get("received_value")
    if kind == "required_input_missing":
        return f"{name} is missing"
    if kind == "value_smaller_than_min":
        return f"{name} must be at least {opts.get('min', '?')} (got {got})"
    if kind == "value_bigger_than_max":
        return f"{name} must be at most {opts.get('max', '?')} (got {got})"
    if kind == "invalid_input_type":
        wanted = config[0] if config and isinstance(config[0], str) else "another type"
        return f"{name} must be {wanted}, got {got!r}"
    if kind == "value_not_in_list":
        choices = config[0] if config and isinstance(config[0], list) else []
        shown = ", ".join(map(str, choices[:6])) + (" …" if len(choices) > 6 else "")
        return f"{name} {got!r} is not available on this server (choices: {shown or 'none'})"
    if kind == "return_type_mismatch":
        return f"{name} is connected to an output of the wrong type"
    if kind == "exception_during_validation":
        return f"could not be validated ({err.get('details', '')})"
    return f"{err.get('message', 'invalid')}: {err.get('details', '')}".rstrip(": ")


def node_error_sentences(body: dict[str, Any]) -> list[str]:
    """One sentence per node error in a POST /prompt 400 body; the top error when there are none."""
    sentences = []
    for node_id, entry in sorted((body.get("node_errors") or {}).items(), key=lambda kv: _sort_key(kv[0])):
        if not isinstance(entry, dict):
            continue
        for err in entry.get("errors", []):
            if isinstance(err, dict):
                sentences.append(f"{_node(node_id, entry.get('class_type'))}: {_one(err)}")
    if not sentences:
        top = body.get("error") or {}
        if isinstance(top, dict):
            msg = top.get("message") or "ComfyUI refused the workflow"
            details = top.get("details")
            sentences.append(f"{msg} ({details})" if details and details != msg else msg)
        else:
            sentences.append(str(top) or "ComfyUI refused the workflow")
    return sentences


MODEL_INPUT_SUFFIX = "_name"  # ckpt_name, unet_name, vae_name, lora_name, clip_name, model_name, …


def lacks_model_or_node(body: dict[str, Any]) -> bool:
    """True when ComfyUI refused a workflow for a model file or node class this server does not have."""
    top = body.get("error")
    if isinstance(top, dict) and top.get("type") == "invalid_prompt" and "does not exist" in str(top.get("message")):
        return True  # "Cannot execute because node X does not exist."
    for entry in (body.get("node_errors") or {}).values():
        for err in entry.get("errors", []) if isinstance(entry, dict) else []:
            name = str((err.get("extra_info") or {}).get("input_name", "")) if isinstance(err, dict) else ""
            if err.get("type") == "value_not_in_list" and name.endswith(MODEL_INPUT_SUFFIX):
                return True
    return False


def execution_error_sentence(data: dict[str, Any]) -> str:
    """An execution_error frame as one sentence."""
    where = _node(str(data.get("node_id", "?")), data.get("node_type"))
    msg = str(data.get("exception_message", "")).strip() or data.get("exception_type", "error")
    return f"{where} failed: {msg}"


def _sort_key(node_id: str) -> tuple[int, str]:
    return (int(node_id), "") if node_id.isdigit() else (1 << 30, node_id)
