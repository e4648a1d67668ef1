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


# What a model file's name ends with (``folder_paths.supported_pt_extensions`` and the GGUF loaders' own).
MODEL_EXTENSIONS = (".safetensors", ".sft", ".ckpt", ".pt", ".pt2", ".pth", ".bin", ".pkl", ".gguf", ".onnx")


def looks_like_model_file(value: Any) -> bool:
    """True for a string that names a model file by its extension."""
    return isinstance(value, str) and value.lower().endswith(MODEL_EXTENSIONS)


def choices_key(class_type: str, input_name: str) -> str:
    """The key of one loader input's file choices, for loaders whose folder Backlot does not know by name."""
    return f"{class_type}.{input_name}"


def model_folder(class_type: str, input_name: str, value: Any = None) -> str | None:
    """Where a loader's input names a file: a models folder, else (for a model file name) the input's own choices.

    None when the input is not a model file. A loader no table here knows (a custom node's, a new core
    one's) is still checked: its file must be among that input's choices in the server's /object_info.
    """
    known = CLASS_FOLDERS.get((class_type, input_name)) or MODEL_INPUTS.get(input_name)
    if known is None and looks_like_model_file(value):
        return choices_key(class_type, input_name)
    return known


def file_choices(object_info: Mapping[str, Any]) -> dict[str, frozenset[str]]:
    """Each loader input's file choices (``Class.input`` -> names) from /object_info, for folders not known by name.

    A loader's choices are its folder's files, so an empty list or one naming model files is a loader's;
    inputs that upload a file (images, video, audio, 3D) are not checked: Backlot sends those with the job.
    """
    out: dict[str, frozenset[str]] = {}
    for cls, spec in object_info.items():
        inputs = spec.get("input") if isinstance(spec, Mapping) else None
        for group in ("required", "optional"):
            declared = inputs.get(group) if isinstance(inputs, Mapping) else None
            for name, conf in (declared or {}).items() if isinstance(declared, Mapping) else ():
                if not (isinstance(conf, list) and conf and isinstance(conf[0], list)):
                    continue
                options = conf[1] if len(conf) > 1 and isinstance(conf[1], Mapping) else {}
                if any("upload" in key for key in options) or model_folder(cls, name) is not None:
                    continue
                values = [v for v in conf[0] if isinstance(v, str)]
                if not values or any(looks_like_model_file(v) for v in values):
                    out[choices_key(cls, name)] = frozenset(values)
    return out


def required_models_and_nodes(workflow_api_json: Mapping[str, Any]) -> tuple[dict[str, set[str]], set[str]]:
    """The model files (per ComfyUI models folder) and node classes an API-format workflow needs.

    A model is counted when a loader input holds a literal file name (a link is not a file).
    """
    models: dict[str, set[str]] = {}
    classes: set[str] = set()
    for _, cls, inputs in nodes(workflow_api_json):
        classes.add(cls)
        for name, value in inputs.items():
            folder = model_folder(cls, name, value)
            if folder is not None and isinstance(value, str) and value and value != "None":
                models.setdefault(folder, set()).add(value)
    return models, classes
