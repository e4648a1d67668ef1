"""What an API-format graph needs: model files per folder and node classes."""
from __future__ import annotations

import json
from pathlib import Path

from backlot.services.backends.comfyui.graph import required_models_and_nodes

WORKFLOWS = Path(__file__).resolve().parents[1] / "resources" / "workflows"


def test_required_models_and_nodes_of_builtin_text_to_image() -> None:
    wf = json.loads((WORKFLOWS / "text_to_image.json").read_text())
    models, classes = required_models_and_nodes(wf)
    assert "checkpoints" in models and len(models["checkpoints"]) == 1
    assert {"KSampler", "CLIPTextEncode", "SaveImage"} <= classes


def test_links_are_not_models_and_clip_vision_has_its_folder() -> None:
    wf = {"1": {"class_type": "UNETLoader", "inputs": {"unet_name": "wan.safetensors", "weight_dtype": "default"}},
          "2": {"class_type": "CLIPVisionLoader", "inputs": {"clip_name": "vision.safetensors"}},
          "3": {"class_type": "DualCLIPLoader", "inputs": {"clip_name1": "a.safetensors", "clip_name2": "b.gguf",
                                                           "type": "flux"}},
          "4": {"class_type": "LoraLoader", "inputs": {"model": ["1", 0], "lora_name": "style.safetensors"}},
          "5": {"class_type": "VAELoader", "inputs": {"vae_name": ["9", 0]}}}
    models, classes = required_models_and_nodes(wf)
    assert models == {"diffusion_models": {"wan.safetensors"}, "clip_vision": {"vision.safetensors"},
                      "text_encoders": {"a.safetensors", "b.gguf"}, "loras": {"style.safetensors"}}
    assert classes == {"UNETLoader", "CLIPVisionLoader", "DualCLIPLoader", "LoraLoader", "VAELoader"}
