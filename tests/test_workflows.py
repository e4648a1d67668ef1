"""ComfyUI workflows: binding inference, UI->API conversion, user folders, workflow=PATH jobs, the CLI."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image

import main
from backlot.services.backends.comfyui import SPEC
from backlot.services.backends.comfyui.convert import ui_to_api
from backlot.services.backends.comfyui.infer import infer_bindings
from backlot.services.backends.comfyui.library import fetch_object_info
from backlot.services.backends.comfyui.options import ComfyUIOptions
from backlot.services.backends.comfyui.workflows import TemplateError, load_all
from backlot.services.config import load_settings
from backlot.services.jobs.manager import JobError
from backlot.services.models import JobState
from tests.test_jobs import center_factory  # noqa: F401 - fixture

BUILTIN = Path(__file__).resolve().parents[1] / "resources" / "workflows"


def _sd_api() -> dict[str, Any]:
    """Prompt and negative reach the sampler through a conditioning node and a ControlNet-style pair."""
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd.safetensors"}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a castle", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "8": {"class_type": "ConditioningSetTimestepRange", "inputs": {"conditioning": ["6", 0], "start": 0.0}},
        "9": {"class_type": "ControlNetApplyAdvanced",
              "inputs": {"positive": ["8", 0], "negative": ["7", 0], "strength": 1.0}},
        "10": {"class_type": "LoraLoader", "inputs": {"model": ["4", 0], "lora_name": "style.safetensors"}},
        "11": {"class_type": "LoraLoader", "inputs": {"model": ["10", 0], "lora_name": "more.safetensors"}},
        "5": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 1024, "height": 768, "batch_size": 2}},
        "3": {"class_type": "KSamplerAdvanced",
              "inputs": {"noise_seed": 5, "steps": 30, "cfg": 4.5, "positive": ["9", 0], "negative": ["9", 1],
                         "latent_image": ["5", 0], "model": ["11", 0]}},
        "12": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "x"}},
    }


def test_inference_traces_prompt_and_negative_through_links() -> None:
    found = infer_bindings(_sd_api())
    b = found.bindings
    assert b["prompt"] == [("6", "text")] and b["negative"] == [("7", "text")]
    assert b["seed"] == [("3", "noise_seed")] and b["steps"] == [("3", "steps")] and b["cfg"] == [("3", "cfg")]
    assert (b["width"], b["height"], b["batch"]) == ([("5", "width")], [("5", "height")], [("5", "batch_size")])
    assert b["checkpoint"] == [("4", "ckpt_name")] and b["lora"] == [("10", "lora_name")]
    assert found.task == "text_to_image" and found.missing == [] and any("lora" in n for n in found.notes)


def test_inference_of_sampler_custom_advanced_video_and_missing() -> None:
    wf = {"1": {"class_type": "RandomNoise", "inputs": {"noise_seed": 1}},
          "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "waves", "clip": ["9", 0]}},
          "3": {"class_type": "BasicGuider", "inputs": {"conditioning": ["2", 0], "model": ["8", 0]}},
          "4": {"class_type": "BasicScheduler", "inputs": {"steps": 8, "denoise": 1.0, "model": ["8", 0]}},
          "5": {"class_type": "EmptyHunyuanLatentVideo", "inputs": {"width": 848, "height": 480, "length": 25,
                                                                     "batch_size": 1}},
          "6": {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["1", 0], "guider": ["3", 0],
                                                                   "sigmas": ["4", 0], "latent_image": ["5", 0]}},
          "7": {"class_type": "SaveVideo", "inputs": {"video": ["6", 0], "filename_prefix": "v"}},
          "8": {"class_type": "UNETLoader", "inputs": {"unet_name": "hv.safetensors"}},
          "9": {"class_type": "CLIPLoader", "inputs": {"clip_name": "t5.safetensors"}}}
    found = infer_bindings(wf)
    assert found.task == "text_to_video"
    assert found.bindings["prompt"] == [("2", "text")] and found.bindings["frames"] == [("5", "length")]
    assert found.bindings["seed"] == [("1", "noise_seed")] and found.bindings["steps"] == [("4", "steps")]
    assert found.models == ["unet", "clip"] and found.missing == ["negative", "cfg"]


def _ui() -> dict[str, Any]:
    """Checkpoint -> encoders -> KSampler -> VAEDecode -> Reroute -> bypassed ImageInvert -> SaveImage."""
    def n(i: int, t: str, w: Any, ins: list[tuple[str, str, int | None]] = (), mode: int = 0,  # type: ignore[assignment]
          outs: list[str] = ()) -> dict[str, Any]:  # type: ignore[assignment]
        return {"id": i, "type": t, "mode": mode, "widgets_values": w,
                "inputs": [{"name": a, "type": b, "link": c} for a, b, c in ins],
                "outputs": [{"name": o, "type": o, "links": []} for o in outs]}
    nodes = [n(1, "CheckpointLoaderSimple", ["sd_xl_base_1.0.safetensors"], outs=["MODEL", "CLIP", "VAE"]),
             n(2, "CLIPTextEncode", ["a castle"], [("clip", "CLIP", 2)], outs=["CONDITIONING"]),
             n(3, "CLIPTextEncode", ["blurry"], [("clip", "CLIP", 3)], outs=["CONDITIONING"]),
             n(4, "EmptyLatentImage", [512, 512, 1], [("width", "INT", 12)], outs=["LATENT"]),
             n(5, "KSampler", [42, "randomize", 20, 7.5, "euler", "normal", 1.0],
               [("model", "MODEL", 1), ("positive", "CONDITIONING", 4), ("negative", "CONDITIONING", 5),
                ("latent_image", "LATENT", 6)], outs=["LATENT"]),
             n(6, "VAEDecode", [], [("samples", "LATENT", 7), ("vae", "VAE", 8)], outs=["IMAGE"]),
             n(7, "SaveImage", ["castle"], [("images", "IMAGE", 11)]),
             n(8, "Reroute", [], [("", "*", 9)], outs=["IMAGE"]),
             n(9, "PrimitiveNode", [640, "fixed"], outs=["INT"]),
             n(10, "PreviewImage", [], [("images", "IMAGE", 13)], mode=2),
             n(11, "ImageInvert", [], [("image", "IMAGE", 10)], mode=4, outs=["IMAGE"])]
    links = [[1, 1, 0, 5, 0, "MODEL"], [2, 1, 1, 2, 0, "CLIP"], [3, 1, 1, 3, 0, "CLIP"], [4, 2, 0, 5, 1, "C"],
             [5, 3, 0, 5, 2, "C"], [6, 4, 0, 5, 3, "LATENT"], [7, 5, 0, 6, 0, "LATENT"], [8, 1, 2, 6, 1, "VAE"],
             [9, 6, 0, 8, 0, "IMAGE"], [10, 8, 0, 11, 0, "IMAGE"], [11, 11, 0, 7, 0, "IMAGE"], [12, 9, 0, 4, 0, "INT"],
             [13, 6, 0, 10, 0, "IMAGE"]]
    return {"nodes": nodes, "links": links, "version": 0.4}


async def _object_info(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        return await fetch_object_info(session, url)


async def test_ui_format_converts_with_the_standins_object_info(standin: Any) -> None:
    info = await _object_info(standin("comfyui").url)
    api = ui_to_api(_ui(), info)
    assert sorted(api, key=int) == ["1", "2", "3", "4", "5", "6", "7"]  # no Reroute, Primitive, muted, bypassed
    assert api["5"]["inputs"] == {"seed": 42, "steps": 20, "cfg": 7.5, "sampler_name": "euler", "scheduler": "normal",
                                  "denoise": 1.0, "model": ["1", 0], "positive": ["2", 0], "negative": ["3", 0],
                                  "latent_image": ["4", 0]}
    assert api["4"]["inputs"] == {"width": 640, "height": 512, "batch_size": 1}  # the Primitive's value
    assert api["7"]["inputs"] == {"filename_prefix": "castle", "images": ["6", 0]}  # through Reroute and bypass
    assert infer_bindings(api).bindings["prompt"] == [("2", "text")]


def test_newer_frontend_shapes_convert() -> None:
    """Links as objects, widgets as a dict, a dynamic combo's own widgets, a default for a missing value, a Note."""
    info = {"Resize": {"input": {"required": {
        "image": ["IMAGE"], "resize_type": ["COMFY_DYNAMICCOMBO_V3", {"options": [
            {"key": "scale by", "inputs": {"required": {"by": ["FLOAT", {"default": 1.0}]}}},
            {"key": "dimensions", "inputs": {"required": {"width": ["INT", {}], "crop": [["none", "center"]]}}}]}],
        "method": ["COMBO", {"options": ["area", "lanczos"]}], "steps": ["INT", {"default": 1}]}},
        "output": ["IMAGE"]},
        "Load": {"input": {"required": {"name": [["a.png"]], "seed": ["INT", {"control_after_generate": True}]}},
                 "output": ["IMAGE"]}}
    ui = {"nodes": [{"id": 1, "type": "Load", "widgets_values": {"name": "a.png", "seed": 3}, "outputs": []},
                    {"id": 2, "type": "Resize", "widgets_values": ["dimensions", 640, "center", "lanczos"],
                     "inputs": [{"name": "image", "type": "IMAGE", "link": 5}]},
                    {"id": 3, "type": "Note", "widgets_values": ["hello"]}],
          "links": [{"id": 5, "origin_id": 1, "origin_slot": 0, "target_id": 2, "target_slot": 0, "type": "IMAGE"}]}
    api = ui_to_api(ui, info)
    assert api == {"1": {"class_type": "Load", "inputs": {"name": "a.png", "seed": 3}},
                   "2": {"class_type": "Resize", "inputs": {
                       "image": ["1", 0], "resize_type": "dimensions", "resize_type.width": 640,
                       "resize_type.crop": "center", "method": "lanczos", "steps": 1}}}
    ui["nodes"][1]["widgets_values"] = []  # a file older than the node: every widget gets what the frontend gives it
    assert ui_to_api(ui, info)["2"]["inputs"] == {"image": ["1", 0], "resize_type": "scale by",
                                                  "resize_type.by": 1.0, "method": "area", "steps": 1}
    ui["links"][0]["origin_slot"] = 1  # the file's node has an output this server's does not
    with pytest.raises(TemplateError, match=r"node 1 \(Load\) has no output 2 on that ComfyUI server.*Export \(API\)"):
        ui_to_api(ui, info)


def test_unknown_nodes_are_refused_in_one_sentence() -> None:
    with pytest.raises(TemplateError, match=r"CheckpointLoaderSimple\) is not on that ComfyUI server"):
        ui_to_api(_ui(), {})


def test_user_workflow_overrides_builtin_and_is_listed(backlot_home: Path, tmp_path: Path) -> None:
    extra = tmp_path / "extra"
    extra.mkdir()
    settings = load_settings(cli={"workflow_dirs": [str(extra)]})
    user = settings.paths.config_dir / "workflows"
    user.mkdir(parents=True)
    shutil.copy(BUILTIN / "standin_image.json", user / "standin_image.json")
    meta = json.loads((BUILTIN / "standin_image.bindings.json").read_text())
    (user / "standin_image.bindings.json").write_text(json.dumps({**meta, "description": "mine"}))
    shutil.copy(BUILTIN / "standin_image.json", extra / "other.json")
    (extra / "other.bindings.json").write_text(json.dumps({**meta, "description": "from workflow_dirs"}))
    templates = load_all(ComfyUIOptions.of(settings.backend_options()))
    assert templates["standin_image"].description == "mine"
    assert templates["standin_image"].source == str(user / "standin_image.json")
    assert templates["other"].description == "from workflow_dirs" and templates["upscale"].source == "built-in"
    assert SPEC.workflows is not None
    listed = {w["name"]: w for w in SPEC.workflows(settings.backend_options())}
    assert listed["standin_image"]["description"] == "mine" and "other" in listed


async def test_workflow_path_runs_a_job_end_to_end(standin: Any, center_factory: Any, tmp_path: Path) -> None:  # noqa: F811
    sp = standin("comfyui", speed=5)
    path = tmp_path / "my_flow.json"  # no bindings file: they are inferred on the fly
    shutil.copy(BUILTIN / "standin_image.json", path)
    c = await center_factory(sp.url)
    with pytest.raises(JobError, match="no input bound to the prompt, so the prompt would be ignored"):
        await c.jobs.submit("text_to_image", "a castle", {"workflow": str(path)})  # it has no text input
    job = await c.jobs.submit("text_to_image", "", {"workflow": str(path), "width": 96, "height": 64})
    done = await c.jobs.wait(job.id, 60)
    assert done.state is JobState.SUCCEEDED, done.status
    (out,) = done.outputs
    with Image.open(out.path) as img:
        assert img.size == (96, 64)
    assert not (c.settings.paths.config_dir / "workflows").exists()  # used, not saved


def test_cli_import_show_list(standin: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ui = tmp_path / "castle.json"
    ui.write_text(json.dumps(_ui()))
    assert main.main(["workflows", "import", str(ui), "--server", standin("comfyui").url]) == 0
    said = capsys.readouterr().out
    assert "converted from the UI format" in said and "prompt -> node 2 text" in said
    assert main.main(["workflows", "show", "castle", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["task"] == "text_to_image" and shown["models"] == {"checkpoints": ["sd_xl_base_1.0.safetensors"]}
    assert shown["bindings"]["width"] == [["4", "width"]] and shown["source"].endswith("castle.json")
    assert main.main(["workflows", "list", "--json"]) == 0
    names = [w["name"] for w in json.loads(capsys.readouterr().out)["workflows"]]
    assert "castle" in names and "text_to_image" in names
    api = tmp_path / "api.json"
    api.write_text(json.dumps({"1": {"class_type": "EmptyImage", "inputs": {"width": 8}}}))
    assert main.main(["workflows", "import", str(api), "--name", "tiny", "--task", "upscale"]) == 2
    assert "saves no image, video or sound, which no Backlot task takes" in capsys.readouterr().err
    api.write_text(json.dumps({"1": {"class_type": "EmptyImage", "inputs": {"width": 8}},
                               "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}}}))
    assert main.main(["workflows", "import", str(api), "--name", "tiny", "--task", "upscale"]) == 0
    assert "task: upscale\n" in capsys.readouterr().out
    assert main.main(["workflows", "show", "nope"]) == 2
    assert "no workflow named 'nope'" in capsys.readouterr().err


def test_a_folder_is_read_again_only_when_its_files_change(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from backlot.services.backends.comfyui import workflows as wfs

    for suffix in (".json", ".bindings.json"):
        shutil.copy(wfs.TEMPLATES_DIR / f"standin_image{suffix}", tmp_path / f"mine{suffix}")
    first = wfs.load_templates(tmp_path, "user")
    reads: list[str] = []
    real = Path.read_text
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: reads.append(self.name) or real(self, *a, **k))
    assert wfs.load_templates(tmp_path, "user") == first and reads == []  # unchanged: not read again
    meta = json.loads(real(tmp_path / "mine.bindings.json"))
    meta["description"] = "edited by hand"
    (tmp_path / "mine.bindings.json").write_text(json.dumps(meta), encoding="utf-8")
    os.utime(tmp_path / "mine.bindings.json", ns=(1, 1))  # even a file that goes back in time counts as changed
    assert wfs.load_templates(tmp_path, "user")["mine"].description == "edited by hand"
    assert "mine.bindings.json" in reads
