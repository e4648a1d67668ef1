"""Guessing a workflow's bindings from its API-format graph: the prompt encoders, sampler, latent, loaders, savers."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from backlot.services.backends.comfyui.graph import is_link, node_order, nodes

SAMPLER_PARAMS = {"KSampler": {"seed": "seed", "steps": "steps", "cfg": "cfg", "denoise": "denoise"},
                  "KSamplerAdvanced": {"noise_seed": "seed", "steps": "steps", "cfg": "cfg"},
                  "SamplerCustom": {"noise_seed": "seed", "cfg": "cfg"},
                  "SamplerCustomAdvanced": {},
                  "RandomNoise": {"noise_seed": "seed"}, "CFGGuider": {"cfg": "cfg"},
                  "BasicScheduler": {"steps": "steps", "denoise": "denoise"}}
LATENT_PARAMS = {"width": "width", "height": "height", "batch_size": "batch", "length": "frames"}
LATENT_NODES = ("EmptyImage", "WanImageToVideo", "WanFirstLastFrameToVideo", "WanVaceToVideo", "LTXVImgToVideo")
LOADER_PARAMS = {"ckpt_name": "checkpoint", "unet_name": "unet", "lora_name": "lora", "vae_name": "vae",
                 "clip_name": "clip"}
TEXT_INPUTS = ("text", "text_g", "text_l", "prompt", "clip_l", "t5xxl")
# Inputs conditioning flows through between a text encoder and the sampler.
COND_INPUTS = ("conditioning", "conditioning_1", "conditioning_2", "conditioning_to", "conditioning_from",
               "positive", "negative", "cond", "cond1", "cond2", "guider")
VIDEO_SAVERS = ("SaveVideo", "SaveWEBM", "SaveAnimatedWEBP", "SaveAnimatedPNG", "VHS_VideoCombine",
                "SaveAnimatedWebp", "VideoCombine")
IMAGE_SAVERS = ("SaveImage", "PreviewImage", "Image Save")
AUDIO_SAVERS = ("SaveAudio", "SaveAudioMP3", "SaveAudioOpus", "PreviewAudio")
MEDIA_SAVERS = (*VIDEO_SAVERS, *IMAGE_SAVERS, *AUDIO_SAVERS)
# Outputs no Backlot task takes, by what they make (a workflow with only these is refused at import).
OTHER_OUTPUTS = {"SaveGLB": "3D models", "Preview3D": "3D models", "Preview3DAnimation": "3D models",
                 "PreviewAny": "chat or LLM text", "SaveSVGNode": "SVG vector files",
                 "SaveLatent": "latents"}
INPUT_IMAGE = ("LoadImage",)
INPUT_VIDEO = {"LoadVideo": "file", "VHS_LoadVideo": "video"}  # loader -> the input naming its file
END_FRAME_INPUTS = ("end_image", "last_frame", "end_frame", "last_image", "image_end")
UPSCALE_NODES = ("ImageUpscaleWithModel", "UpscaleModelLoader", "LatentUpscaleModelLoader", "TopazImageEnhance")
ZEROED = ("ConditioningZeroOut",)
# A literal text a job's prompt may replace where no sampler shows which encoder is the positive one: an API
# node's own prompt, or a text primitive feeding one. Inputs that steer the model rather than describe the shot
# (system prompts, regex patterns, negatives) never take it.
PROMPT_NAMES = ("prompt", "prompt_text", "positive_prompt", "text", "text_prompt")
NEGATIVE_NAMES = ("negative_prompt", "negative")
TEXT_PRIMITIVES = {"PrimitiveStringMultiline": "value", "PrimitiveString": "value"}


@dataclass
class Inference:
    """What import found in a graph: bindings, the model parameters, the task, and what it could not find."""

    task: str
    bindings: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    models: list[str] = field(default_factory=list)
    requires_input: bool = False
    missing: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def meta(self, description: str) -> dict[str, Any]:
        """The ``.bindings.json`` content."""
        return {"task": self.task, "description": description,
                "bindings": {k: [list(b) for b in v] for k, v in self.bindings.items()},
                "models": self.models, "requires_input": self.requires_input, "defaults": {}}


def _bind(out: dict[str, list[tuple[str, str]]], param: str, node: str, name: str) -> None:
    if (node, name) not in out.setdefault(param, []):
        out[param].append((node, name))


def _encoders(wf: dict[str, Any], start: Any) -> list[str]:
    """Text encoder node ids that conditioning reaching ``start`` (a link) comes from."""
    found: list[str] = []
    todo, seen = [start], set()
    while todo:
        link = todo.pop()
        if not is_link(link) or link[0] not in wf or tuple(link) in seen:
            continue
        seen.add(tuple(link))
        node = wf[link[0]]
        inputs = node.get("inputs", {})
        if node.get("class_type") in ZEROED:
            continue  # its output ignores the text that reaches it
        if any(isinstance(inputs.get(t), str) or is_link(inputs.get(t)) for t in TEXT_INPUTS if t in inputs) \
                and "TextEncode" in node.get("class_type", ""):
            found.append(link[0])
            continue
        if "positive" in inputs and "negative" in inputs and not is_link(inputs.get("guider")):
            todo.append(inputs["negative"] if link[1] == 1 else inputs["positive"])  # e.g. ControlNetApplyAdvanced
            continue
        todo.extend(inputs[n] for n in COND_INPUTS if n in inputs)
    return sorted(found, key=node_order)


def _text_source(wf: dict[str, Any], node: str, name: str, depth: int = 0) -> tuple[str, str] | None:
    """Where the literal text of ``node.name`` is written: the input itself, or a text primitive it is linked to."""
    value = wf[node]["inputs"].get(name)
    if isinstance(value, str):
        return node, name
    if not is_link(value) or value[0] not in wf or depth > 20:
        return None
    source = wf[value[0]]
    field_name = TEXT_PRIMITIVES.get(str(source.get("class_type")))
    if field_name is not None:
        return _text_source(wf, value[0], field_name, depth + 1)
    inputs = source.get("inputs", {})  # text built from parts: the shot is what is appended or substituted
    for part in ("string_b", "replace", "string_a", "string", "text", "value"):  # StringConcatenate, RegexReplace, …
        found = _text_source(wf, value[0], part, depth + 1) if part in inputs else None
        if found is not None:
            return found
    return None


def _upstream(wf: dict[str, Any], ends: list[str]) -> set[str]:
    """Every node whose output reaches one of ``ends`` (included)."""
    seen: set[str] = set()
    todo = list(ends)
    while todo:
        nid = todo.pop()
        if nid in seen or nid not in wf:
            continue
        seen.add(nid)
        todo.extend(v[0] for v in wf[nid].get("inputs", {}).values() if is_link(v))
    return seen


def _consumers(wf: dict[str, Any], nid: str) -> list[str]:
    """The input names other nodes read ``nid``'s outputs into."""
    return [name for _, _, inputs in nodes(wf) for name, v in inputs.items() if is_link(v) and v[0] == nid]


def _direct_prompt(wf: dict[str, Any], reach: set[str], b: dict[str, list[tuple[str, str]]],
                   found: Inference) -> None:
    """No sampler shows the positive encoder (API nodes, edit models): the first prompt-like text that reaches an output."""
    candidates: list[tuple[str, str]] = []
    for nid, cls, inputs in sorted(nodes(wf), key=lambda n: node_order(n[0])):
        if nid not in reach or cls in TEXT_PRIMITIVES:
            continue
        for name in PROMPT_NAMES:
            source = _text_source(wf, nid, name) if name in inputs else None
            if source is not None and source not in candidates:
                candidates.append(source)
    if not candidates:
        return
    node, name = candidates[0]
    _bind(b, "prompt", node, name)
    for neg in NEGATIVE_NAMES:
        if isinstance(wf[node]["inputs"].get(neg), str):
            _bind(b, "negative", node, neg)
    if len(candidates) > 1:
        rest = ", ".join(f"node {n} {i}" for n, i in candidates[1:4]) + (" …" if len(candidates) > 4 else "")
        found.notes.append(f"the prompt goes to node {node} {name}; other texts keep the workflow's own ({rest})")


def infer_bindings(workflow: dict[str, Any], task: str | None = None) -> Inference:
    """Bindings for the usual parameters, found by walking the graph from its sampler (or its outputs)."""
    b: dict[str, list[tuple[str, str]]] = {}
    found = Inference("")
    classes = {nid: cls for nid, cls, _ in nodes(workflow)}
    samplers = [nid for nid, cls in classes.items() if cls in ("KSampler", "KSamplerAdvanced", "SamplerCustom",
                                                                 "SamplerCustomAdvanced")]
    images = [nid for nid, cls in sorted(classes.items(), key=lambda c: node_order(c[0])) if cls in INPUT_IMAGE]
    ends = [nid for nid in images if any(n in END_FRAME_INPUTS for n in _consumers(workflow, nid))]
    for nid, cls, inputs in sorted(nodes(workflow), key=lambda n: node_order(n[0])):
        for inp, param in SAMPLER_PARAMS.get(cls, {}).items():
            if inp in inputs and not is_link(inputs[inp]):
                _bind(b, param, nid, inp)
        if cls.startswith("Empty") and "Latent" in cls or cls in LATENT_NODES:
            for inp, param in LATENT_PARAMS.items():
                if inp in inputs and not is_link(inputs[inp]):
                    _bind(b, param, nid, inp)
        if cls in INPUT_VIDEO and isinstance(inputs.get(INPUT_VIDEO[cls]), str) and "input_video" not in b:
            _bind(b, "input_video", nid, INPUT_VIDEO[cls])
        if "filename_prefix" in inputs and not is_link(inputs["filename_prefix"]):
            _bind(b, "prefix", nid, "filename_prefix")
        for inp, param in LOADER_PARAMS.items():
            if not isinstance(inputs.get(inp), str):
                continue
            if param in b:
                note = f"only the first {param} loader (node {b[param][0][0]}) is bound to {param}"
                found.notes += [] if note in found.notes else [note]
                continue
            _bind(b, param, nid, inp)
            found.models.append(param)
    starts = [nid for nid in images if nid not in ends][:1]  # the input image; an end frame has its own input
    for nid in starts:
        _bind(b, "input_image", nid, "image")
    for nid in ends[:1]:
        _bind(b, "end_image", nid, "image")
    kept = [nid for nid in images if nid not in starts + ends[:1]]
    if kept:
        which = f"LoadImage nodes {', '.join(kept)} keep" if len(kept) > 1 else f"LoadImage node {kept[0]} keeps"
        found.notes.append(f"{which} the workflow's own picture (bind it in the .bindings.json to send one)")
    for role in ("positive", "negative"):
        conds = [workflow[s]["inputs"].get(role) for s in samplers]
        conds += [workflow[g]["inputs"].get(role) for g, c in classes.items() if c.endswith("Guider")]
        if role == "positive":
            conds += [workflow[g]["inputs"].get(n) for g, c in classes.items() if c.endswith("Guider")
                         for n in ("conditioning", "cond1", "cond")]
        for enc in sorted({e for s in conds for e in _encoders(workflow, s)}, key=node_order):  # a stable order
            for t in TEXT_INPUTS:
                source = _text_source(workflow, enc, t) if t in workflow[enc]["inputs"] else None
                if source is not None:
                    _bind(b, "prompt" if role == "positive" else "negative", *source)
    if "negative" in b:  # a guider may feed the positive text in as its "negative" (DualCFGGuider's second cond)
        b["negative"] = [pair for pair in b["negative"] if pair not in b.get("prompt", [])]
        if not b["negative"]:
            del b["negative"]
    outputs = [nid for nid, cls in classes.items() if cls in MEDIA_SAVERS]
    if "prompt" not in b:
        _direct_prompt(workflow, _upstream(workflow, outputs), b, found)
    if not samplers and "prompt" not in b:
        found.notes.append("no sampler (KSampler, KSamplerAdvanced or SamplerCustom) was found")
    found.bindings = b
    found.requires_input = "input_image" in b or "input_video" in b
    found.task = task or guess_task(set(classes.values()), b)
    wanted = ["prompt", "negative", "seed", "steps", "cfg", "width", "height"] if samplers else ["prompt"]
    found.missing = [p for p in wanted if p not in b]
    return found


def unusable_outputs(workflow: dict[str, Any]) -> str | None:
    """Why no Backlot task can take what a graph makes (no image, video or sound saver), or None when one can."""
    classes = {cls for _, cls, _ in nodes(workflow)}
    if classes & set(MEDIA_SAVERS):
        return None
    makes = sorted({OTHER_OUTPUTS[c] for c in classes if c in OTHER_OUTPUTS})
    savers = sorted(c for c in classes if c in OTHER_OUTPUTS)
    what = f"makes {' and '.join(makes)} ({', '.join(savers)})" if makes else "saves no image, video or sound"
    return f"this workflow {what}, which no Backlot task takes (its tasks make images, video and sound)"


def guess_task(classes: set[str], bindings: dict[str, Any]) -> str:
    """The task a graph most likely serves, from its savers and the media it loads."""
    image_in, video_in = "input_image" in bindings, "input_video" in bindings
    if classes & set(VIDEO_SAVERS) or "frames" in bindings:
        return "video_to_video" if video_in else "image_to_video" if image_in else "text_to_video"
    if classes & set(AUDIO_SAVERS):
        return "sound_effects"
    if image_in and classes & set(UPSCALE_NODES) and ("prompt" not in bindings or "TopazImageEnhance" in classes):
        return "upscale"
    if image_in or video_in:
        return "image_edit"
    return "text_to_image"
