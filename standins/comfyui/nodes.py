"""The model-free nodes the ComfyUI stand-in really executes, with ComfyUI 0.8's object_info specs."""
from __future__ import annotations

import json
import random
import string
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageFilter, ImageOps
from PIL.PngImagePlugin import PngInfo

INT_MAX = 0xFFFFFFFFFFFFFFFF
UPSCALE_METHODS = ["nearest-exact", "bilinear", "area", "bicubic", "lanczos"]
PIL_RESAMPLE = {"nearest-exact": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
                "area": Image.Resampling.BOX, "bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS}


class Interrupted(Exception):
    """Raised inside a node when /interrupt reaches it (ComfyUI's InterruptProcessingException)."""


@dataclass
class RunContext:
    """What a running node may use: folders, the time scale, progress and interrupt hooks."""

    output_dir: Path
    temp_dir: Path
    input_dir: Path
    speed: float
    prompt: dict[str, Any]
    extra_pnginfo: dict[str, Any]
    interrupt: threading.Event
    progress: Callable[..., None] = lambda value, total, preview=None: None  # preview: ("JPEG"|"PNG", image)
    vram_used: Callable[[int], None] = lambda nbytes: None
    counters: dict[str, int] = field(default_factory=dict)

    def work(self, seconds: float, total: float = 0.0) -> None:
        """Spend ``seconds`` of simulated compute (scaled by speed), stopping at an interrupt."""
        deadline = time.monotonic() + seconds / self.speed
        while True:
            left = deadline - time.monotonic()
            if self.interrupt.is_set():
                raise Interrupted()
            if left <= 0:
                return
            self.interrupt.wait(min(left, 0.05))


Images = list[Image.Image]


def _spec(inputs: dict[str, Any], output: list[str], category: str, *, output_node: bool = False,
          module: str = "nodes", optional: dict[str, Any] | None = None, hidden: dict[str, Any] | None = None,
          names: list[str] | None = None, description: str = "") -> dict[str, Any]:
    spec: dict[str, Any] = {"input": {"required": inputs}, "input_order": {"required": list(inputs)}}
    if optional:
        spec["input"]["optional"] = optional
        spec["input_order"]["optional"] = list(optional)
    if hidden:
        spec["input"]["hidden"] = hidden
        spec["input_order"]["hidden"] = list(hidden)
    spec.update({"output": output, "output_is_list": [False] * len(output), "output_name": names or output,
                 "description": description, "python_module": module, "category": category,
                 "output_node": output_node})
    return spec


def _int(default: int, lo: int, hi: int, step: int | None = 1, **extra: Any) -> list[Any]:
    cfg: dict[str, Any] = {"default": default, "min": lo, "max": hi}
    if step is not None:
        cfg["step"] = step
    cfg.update(extra)
    return ["INT", cfg]


def _float(default: float, lo: float, hi: float, step: float) -> list[Any]:
    return ["FLOAT", {"default": default, "min": lo, "max": hi, "step": step}]


WITHOUT: set[str] = set()  # node classes this server pretends not to have (--without-nodes)


def node_specs(input_files: list[str]) -> dict[str, dict[str, Any]]:
    """object_info for every node class, with display names filled in (LoadImage lists input files)."""
    image = ["IMAGE", {}]
    specs = {
        "EmptyImage": _spec({"width": _int(512, 1, 16384), "height": _int(512, 1, 16384),
                             "batch_size": _int(1, 1, 4096, None), "color": _int(0, 0, 0xFFFFFF, display="color")},
                            ["IMAGE"], "image"),
        "LoadImage": _spec({"image": [sorted(input_files), {"image_upload": True}]}, ["IMAGE", "MASK"], "image"),
        "ImageInvert": _spec({"image": ["IMAGE"]}, ["IMAGE"], "image"),
        "ImageScale": _spec({"image": ["IMAGE"], "upscale_method": [UPSCALE_METHODS, {}],
                             "width": _int(512, 0, 16384), "height": _int(512, 0, 16384),
                             "crop": [["disabled", "center"], {}]}, ["IMAGE"], "image/upscaling"),
        "ImageBlur": _spec({"image": image, "blur_radius": _int(1, 1, 31), "sigma": _float(1.0, 0.1, 10.0, 0.1)},
                           ["IMAGE"], "image/postprocessing", module="comfy_extras.nodes_post_processing"),
        "ImageSharpen": _spec({"image": image, "sharpen_radius": _int(1, 1, 31), "sigma": _float(1.0, 0.1, 10.0, 0.01),
                               "alpha": _float(1.0, 0.0, 5.0, 0.01)},
                              ["IMAGE"], "image/postprocessing", module="comfy_extras.nodes_post_processing"),
        "SaveImage": _spec({"images": ["IMAGE", {"tooltip": "The images to save."}],
                            "filename_prefix": ["STRING", {"default": "ComfyUI"}]}, [], "image", output_node=True,
                           hidden={"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
                           description="Saves the input images to your ComfyUI output directory."),
        "PreviewImage": _spec({"images": ["IMAGE"]}, [], "image", output_node=True,
                              hidden={"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
                              description="Saves the input images to your ComfyUI output directory."),
        "StandinSleep": _spec({"seconds": _float(1.0, 0.0, 3600.0, 0.01)}, ["IMAGE"], "backlot/testing",
                              module="custom_nodes.backlot_standin", optional={"image": ["IMAGE"]},
                              description="Waits, sending progress about 20 times a second; honours /interrupt."),
    }
    from backlot.standins.comfyui.model_nodes import model_specs

    specs.update(model_specs())
    for name in WITHOUT:
        specs.pop(name, None)
    for name, spec in specs.items():
        spec["name"] = name
        spec["display_name"] = {"ImageScale": "Upscale Image", "ImageInvert": "Invert Image", "LoadImage": "Load Image",
                                "SaveImage": "Save Image", "PreviewImage": "Preview Image",
                                "StandinSleep": "Stand-in Sleep", "CheckpointLoaderSimple": "Load Checkpoint",
                                "CLIPTextEncode": "CLIP Text Encode (Prompt)", "EmptyLatentImage": "Empty Latent Image",
                                "VAEDecode": "VAE Decode", "VAEEncode": "VAE Encode"}.get(name, name)
    from backlot.standins.comfyui.core_specs import core_specs
    from backlot.standins.comfyui.model_nodes import FOLDER_FILES

    specs.update({k: v for k, v in core_specs(FOLDER_FILES).items() if k not in specs and k not in WITHOUT})
    return specs


def _work_for(ctx: RunContext, images: Images, per_megapixel: float) -> None:
    pixels = sum(im.width * im.height for im in images)
    ctx.vram_used(pixels * 4 * 4)  # float32 RGBA tensors, as torch would hold them
    ctx.work(pixels / 1e6 * per_megapixel)


def empty_image(ctx: RunContext, width: int, height: int, batch_size: int, color: int) -> tuple[Images]:
    """A batch of solid images (ComfyUI's colour is 0xRRGGBB)."""
    rgb = ((color >> 16) & 0xFF, (color >> 8) & 0xFF, color & 0xFF)
    images = [Image.new("RGB", (width, height), rgb) for _ in range(batch_size)]
    _work_for(ctx, images, 0.002)
    return (images,)


def load_image(ctx: RunContext, image: str) -> tuple[Images, Images]:
    """An uploaded image from the input folder, and its alpha as a mask."""
    name = image.rsplit(" [", 1)[0]
    with Image.open(ctx.input_dir / name) as im:
        im = ImageOps.exif_transpose(im)
        mask = im.getchannel("A") if "A" in im.getbands() else Image.new("L", im.size, 0)
        return ([im.convert("RGB")], [mask])


def image_invert(ctx: RunContext, image: Images) -> tuple[Images]:
    """Invert colours."""
    _work_for(ctx, image, 0.01)
    return ([ImageOps.invert(im.convert("RGB")) for im in image],)


def image_scale(ctx: RunContext, image: Images, upscale_method: str, width: int, height: int, crop: str) -> tuple[Images]:
    """Resize; a zero side keeps the aspect ratio, crop 'center' fills the target size."""
    out = []
    for im in image:
        w = width or max(1, round(im.width * height / im.height))
        h = height or max(1, round(im.height * w / im.width))
        if crop == "center":
            out.append(ImageOps.fit(im, (w, h), PIL_RESAMPLE[upscale_method]))
        else:
            out.append(im.resize((w, h), PIL_RESAMPLE[upscale_method]))
    _work_for(ctx, out, 0.05)
    return (out,)


def image_blur(ctx: RunContext, image: Images, blur_radius: int, sigma: float) -> tuple[Images]:
    """Gaussian blur; costs about as much time as ComfyUI's CPU blur (~2 s per megapixel at radius 31)."""
    _work_for(ctx, image, 2.0 * blur_radius / 31)
    return ([im.filter(ImageFilter.GaussianBlur(min(sigma * 2, blur_radius))) for im in image],)


def image_sharpen(ctx: RunContext, image: Images, sharpen_radius: int, sigma: float, alpha: float) -> tuple[Images]:
    """Unsharp mask."""
    _work_for(ctx, image, 0.5 * sharpen_radius / 31)
    return ([im.filter(ImageFilter.UnsharpMask(sharpen_radius, int(alpha * 100), 0)) for im in image],)


def _sleep_preview(fraction: float) -> Image.Image:
    """A 64x64 preview whose bar grows with the sleep, so successive previews differ."""
    im = Image.new("RGB", (64, 64), (30, 30, 60))
    im.paste((90, 200, 140), (0, 40, max(1, int(64 * fraction)), 64))
    return im


def standin_sleep(ctx: RunContext, seconds: float, image: Images | None = None) -> tuple[Images]:
    """Wait ``seconds`` (scaled by speed), reporting progress about 20 times a second."""
    start = time.monotonic()
    wall = seconds / ctx.speed
    ctx.progress(0.0, seconds)
    while True:
        elapsed = time.monotonic() - start
        if ctx.interrupt.is_set():
            raise Interrupted()
        if elapsed >= wall:
            break
        ctx.interrupt.wait(min(0.05, wall - elapsed))
        done = min(seconds, (time.monotonic() - start) * ctx.speed)
        ctx.progress(done, seconds, ("PNG", _sleep_preview(done / seconds if seconds else 1.0)))
    ctx.progress(seconds, seconds)
    return (image if image is not None else [Image.new("RGB", (64, 64), (0, 0, 0))],)


def _next_counter(folder: Path, prefix: str) -> int:
    start = len(prefix) + 1
    best = 0
    for p in folder.glob(f"{prefix}_*_.png") if folder.exists() else ():
        digits = p.name[start:start + 5]
        if digits.isdigit():
            best = max(best, int(digits))
    return best + 1


def _save(ctx: RunContext, images: Images, root: Path, prefix: str, kind: str) -> dict[str, Any]:
    subfolder, _, base = prefix.replace("\\", "/").rpartition("/")
    folder = (root / subfolder).resolve()
    if root.resolve() not in (folder, *folder.parents):
        raise ValueError("Saving image outside the output folder is not allowed.")
    folder.mkdir(parents=True, exist_ok=True)
    counter = _next_counter(folder, base)
    results = []
    meta = PngInfo()
    meta.add_text("prompt", json.dumps(ctx.prompt))
    for key, value in ctx.extra_pnginfo.items():
        meta.add_text(key, json.dumps(value))
    for im in images:
        name = f"{base}_{counter:05}_.png"
        im.save(folder / name, pnginfo=meta, compress_level=4)
        results.append({"filename": name, "subfolder": subfolder, "type": kind})
        counter += 1
    return {"images": results}


def save_image(ctx: RunContext, images: Images, filename_prefix: str) -> dict[str, Any]:
    """Write PNGs to the output folder, numbered like ComfyUI (prefix_00001_.png)."""
    return {"ui": _save(ctx, images, ctx.output_dir, filename_prefix, "output")}


def preview_image(ctx: RunContext, images: Images) -> dict[str, Any]:
    """Write PNGs to the temp folder as ComfyUI_temp_<5 letters>_00001_.png."""
    suffix = "".join(random.choice(string.ascii_lowercase) for _ in range(5))
    return {"ui": _save(ctx, images, ctx.temp_dir, f"ComfyUI_temp_{suffix}", "temp")}


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "EmptyImage": empty_image, "LoadImage": load_image, "ImageInvert": image_invert, "ImageScale": image_scale,
    "ImageBlur": image_blur, "ImageSharpen": image_sharpen, "SaveImage": save_image,
    "PreviewImage": preview_image, "StandinSleep": standin_sleep,
}


def all_functions() -> dict[str, Callable[..., Any]]:
    """Every executable node class, model stand-ins included."""
    from backlot.standins.comfyui.core_specs import core_functions
    from backlot.standins.comfyui.model_nodes import MODEL_FUNCTIONS

    return {**core_functions(), **FUNCTIONS, **MODEL_FUNCTIONS}
