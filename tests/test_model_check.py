"""Every model file a workflow names is checked against what the server has, in every folder it lists."""
from __future__ import annotations

import json
from pathlib import Path

from backlot.services.backends.comfyui.graph import file_choices, required_models_and_nodes
from backlot.services.backends.spec import Inventory, Needs

OBJECT_INFO = json.loads((Path(__file__).parent / "data" / "comfyui-0.8.0-object_info.json").read_text())
# What /models listed on that server (ComfyUI 0.8.0, no models installed)
FOLDERS = ["checkpoints", "loras", "vae", "text_encoders", "diffusion_models", "clip_vision", "style_models",
           "embeddings", "diffusers", "vae_approx", "controlnet", "gligen", "upscale_models", "latent_upscale_models",
           "hypernetworks", "photomaker", "classifiers", "model_patches", "audio_encoders"]

WAN_I2V_WITH_CONTROL = {  # a Wan 2.1 image-to-video graph's loaders, a controlnet and a custom node's loader
    "1": {"class_type": "UNETLoader", "inputs": {"unet_name": "wan2.1_i2v_480p_14B_fp16.safetensors",
                                                 "weight_dtype": "default"}},
    "2": {"class_type": "CLIPLoader", "inputs": {"clip_name": "umt5_xxl_fp8_e4m3fn_scaled.safetensors", "type": "wan"}},
    "3": {"class_type": "VAELoader", "inputs": {"vae_name": "wan_2.1_vae.safetensors"}},
    "4": {"class_type": "CLIPVisionLoader", "inputs": {"clip_name": "clip_vision_h.safetensors"}},
    "5": {"class_type": "ControlNetLoader", "inputs": {"control_net_name": "depth.safetensors"}},
    "6": {"class_type": "ModelPatchLoader", "inputs": {"name": "uso-flux1-projector-v1.safetensors"}},
    "7": {"class_type": "UnetLoaderGGUFAdvanced", "inputs": {"gguf_name": "wan-q4.gguf"}},
    "8": {"class_type": "LoadImage", "inputs": {"image": "example.png"}},
}


def _server(folders: dict[str, set[str]] | None = None) -> Inventory:
    """An inventory as read from that server: every folder it lists, plus its loaders' own choices."""
    models = {f: frozenset((folders or {}).get(f, set())) for f in FOLDERS}
    return Inventory({**models, **file_choices(OBJECT_INFO)}, frozenset(OBJECT_INFO))


def test_every_model_file_is_needed_from_its_folder() -> None:
    models, nodes = required_models_and_nodes(WAN_I2V_WITH_CONTROL)
    assert models == {"diffusion_models": {"wan2.1_i2v_480p_14B_fp16.safetensors"},
                      "text_encoders": {"umt5_xxl_fp8_e4m3fn_scaled.safetensors"},
                      "vae": {"wan_2.1_vae.safetensors"}, "clip_vision": {"clip_vision_h.safetensors"},
                      "controlnet": {"depth.safetensors"}, "model_patches": {"uso-flux1-projector-v1.safetensors"},
                      "UnetLoaderGGUFAdvanced.gguf_name": {"wan-q4.gguf"}}  # a loader no table knows: by its file
    assert "LoadImage" in nodes  # an input image is sent with the job, not looked up


def test_a_server_without_the_files_is_refused_naming_them_all() -> None:
    models, nodes = required_models_and_nodes(WAN_I2V_WITH_CONTROL)
    needs = Needs({k: frozenset(v) for k, v in models.items()}, frozenset(nodes - {"UnetLoaderGGUFAdvanced"}))
    gaps = needs.missing(_server())
    assert sorted(name for _, name in gaps) == sorted(
        {n for names in models.values() for n in names} - {"wan-q4.gguf"})  # that loader is not on this server
    said = needs.refusal({"comfyui@127.0.0.1:8188": _server()})
    for name in ("clip_vision_h.safetensors", "depth.safetensors", "uso-flux1-projector-v1.safetensors",
                 "wan2.1_i2v_480p_14B_fp16.safetensors", "umt5_xxl_fp8_e4m3fn_scaled.safetensors",
                 "wan_2.1_vae.safetensors"):
        assert name in said, said
    assert "clip vision clip_vision_h.safetensors" in said and "controlnet depth.safetensors" in said


def test_a_server_with_the_files_has_nothing_missing() -> None:
    models, nodes = required_models_and_nodes(WAN_I2V_WITH_CONTROL)
    needs = Needs({k: frozenset(v) for k, v in models.items() if "." not in k}, frozenset(nodes - {"UnetLoaderGGUFAdvanced"}))
    assert needs.missing(_server({k: set(v) for k, v in models.items()})) == []


def test_loader_choices_come_from_object_info_not_a_list() -> None:
    """A loader whose folder Backlot knows by no name is checked against that input's choices on the server."""
    info = {**OBJECT_INFO, "MyLoader": {"input": {"required": {"weights": [["a.gguf", "b.gguf"]],
                                                               "mode": [["fast", "slow"]]}}}}
    choices = file_choices(info)
    assert choices["MyLoader.weights"] == {"a.gguf", "b.gguf"}
    assert "MyLoader.mode" not in choices  # not files
    assert not [k for k in choices if k.startswith(("LoadImage.", "LoadVideo.", "LoadAudio."))]  # uploaded with the job
    models, _ = required_models_and_nodes({"1": {"class_type": "MyLoader", "inputs": {"weights": "c.gguf",
                                                                                     "mode": "fast"}}})
    needs = Needs({k: frozenset(v) for k, v in models.items()})
    server = Inventory(choices, frozenset(info))
    assert needs.missing(server) == [("MyLoader.weights", "c.gguf")]
    assert "file for MyLoader.weights c.gguf" in needs.refusal({"s": server})
