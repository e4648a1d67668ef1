"""Reading an API-format ComfyUI graph: which nodes and model files it needs, and how its nodes are linked."""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

# Loader input name -> the models folder ComfyUI looks the file up in (``GET /models/{folder}``).
MODEL_INPUTS: dict[str, str] = {
    "ckpt_name": "checkpoints", "unet_name": "diffusion_models", "lora_name": "loras", "vae_name": "vae",
    "clip_name": "text_encoders", "clip_name1": "text_encoders", "clip_name2": "text_encoders",
    "clip_name3": "text_encoders", "clip_name4": "text_encoders", "control_net_name": "controlnet",
    "style_model_name": "style_models", "gligen_name": "gligen", "upscale_model": "upscale_models",
    "hypernetwork_name": "hypernetworks", "lora_name_1": "loras", "lora_name_2": "loras",
}
# Loaders whose input name alone would point at the wrong folder.
CLASS_FOLDERS: dict[tuple[str, str], str] = {
    ("CLIPVisionLoader", "clip_name"): "clip_vision",
    ("UpscaleModelLoader", "model_name"): "upscale_models",
    ("LatentUpscaleModelLoader", "model_name"): "latent_upscale_models",
    ("PhotoMakerLoader", "photomaker_model_name"): "photomaker",
    ("AudioEncoderLoader", "audio_encoder_name"): "audio_encoders",
    ("ModelPatchLoader", "name"): "model_patches",
}


def is_link(value: Any) -> bool:
    """True for an API-format link ``[node_id, output_index]``."""
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int)


def nodes(workflow: Mapping[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(node id, class_type, inputs) for every node of an API-format workflow."""
    for node_id, node in workflow.items():
        if isinstance(node, Mapping) and isinstance(node.get("class_type"), str):
            inputs = node.get("inputs")
            yield str(node_id), node["class_type"], dict(inputs) if isinstance(inputs, Mapping) else {}


def node_order(node_id: str) -> tuple[int, str]:
    """Sort key for node ids: numbers in numeric order, then the rest by name."""
    return (int(node_id), "") if node_id.isdigit() else (1 << 30, node_id)


def model_folder(class_type: str, input_name: str) -> str | None:
    """The models folder a loader's input names a file in, or None when the input is not a model file."""
    return CLASS_FOLDERS.get((class_type, input_name)) or MODEL_INPUTS.get(input_name)


def required_models_and_nodes(workflow_api_json: Mapping[str, Any]) -> tuple[dict[str, set[str]], set[str]]:
    """The model files (per ComfyUI models folder) and node classes an API-format workflow needs.

    A model is counted when a loader input holds a literal file name (a link is not a file).
    """
    models: dict[str, set[str]] = {}
    classes: set[str] = set()
    for _, cls, inputs in nodes(workflow_api_json):
        classes.add(cls)
        for name, value in inputs.items():
            folder = model_folder(cls, name)
            if folder is not None and isinstance(value, str) and value and value != "None":
                models.setdefault(folder, set()).add(value)
    return models, classes
