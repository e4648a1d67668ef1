"""Guessing a workflow's bindings from its API-format graph: the prompt encoders, sampler, latent, loaders, savers."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from services.backends.comfyui.graph import is_link, node_order, nodes

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
               "positive", "negative", "cond", "guider")
VIDEO_SAVERS = ("SaveVideo", "SaveWEBM", "SaveAnimatedWEBP", "SaveAnimatedPNG", "VHS_VideoCombine",
                "SaveAnimatedWebp", "VideoCombine")
IMAGE_SAVERS = ("SaveImage", "PreviewImage", "Image Save")
AUDIO_SAVERS = ("SaveAudio", "SaveAudioMP3", "SaveAudioOpus", "PreviewAudio")
INPUT_IMAGE = ("LoadImage",)
ZEROED = ("ConditioningZeroOut",)


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


def infer_bindings(workflow: dict[str, Any], task: str | None = None) -> Inference:
    """Bindings for the usual parameters, found by walking the graph from its sampler."""
    b: dict[str, list[tuple[str, str]]] = {}
    found = Inference("")
    classes = {nid: cls for nid, cls, _ in nodes(workflow)}
    samplers = [nid for nid, cls in classes.items() if cls in ("KSampler", "KSamplerAdvanced", "SamplerCustom",
                                                                 "SamplerCustomAdvanced")]
    for nid, cls, inputs in sorted(nodes(workflow), key=lambda n: node_order(n[0])):
        for inp, param in SAMPLER_PARAMS.get(cls, {}).items():
            if inp in inputs and not is_link(inputs[inp]):
                _bind(b, param, nid, inp)
        if cls.startswith("Empty") and "Latent" in cls or cls in LATENT_NODES:
            for inp, param in LATENT_PARAMS.items():
                if inp in inputs and not is_link(inputs[inp]):
                    _bind(b, param, nid, inp)
        if cls in INPUT_IMAGE:
            _bind(b, "input_image", nid, "image")
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
    for role in ("positive", "negative"):
        starts = [workflow[s]["inputs"].get(role) for s in samplers]
        starts += [workflow[g]["inputs"].get(role) for g, c in classes.items() if c == "CFGGuider"]
        if role == "positive":
            starts += [workflow[g]["inputs"].get("conditioning") for g, c in classes.items() if c == "BasicGuider"]
        for enc in sorted({e for s in starts for e in _encoders(workflow, s)}, key=node_order):  # a stable order
            for t in TEXT_INPUTS:
                if isinstance(workflow[enc]["inputs"].get(t), str):
                    _bind(b, "prompt" if role == "positive" else "negative", enc, t)
    if not samplers:
        found.notes.append("no sampler (KSampler, KSamplerAdvanced or SamplerCustom) was found")
    found.bindings = b
    found.requires_input = "input_image" in b
    found.task = task or guess_task(set(classes.values()), b)
    wanted = ["prompt", "negative", "seed", "steps", "cfg", "width", "height"] if samplers else []
    found.missing = [p for p in wanted if p not in b]
    return found


def guess_task(classes: set[str], bindings: dict[str, Any]) -> str:
    """The task a graph most likely serves, from its savers and whether it loads an image."""
    image_in = "input_image" in bindings
    if classes & set(VIDEO_SAVERS) or "frames" in bindings:
        return "image_to_video" if image_in else "text_to_video"
    if classes & set(AUDIO_SAVERS):
        return "sound_effects"
    if image_in and ("prompt" not in bindings or "ImageUpscaleWithModel" in classes):
        return "upscale"
    if image_in:
        return "character_consistency"
    return "text_to_image"
