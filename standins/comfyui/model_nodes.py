"""Stand-ins for ComfyUI's model nodes (checkpoints, text encoders, samplers, VAE, video).

No model can run here, so these speak the real nodes' names, inputs and outputs and make
plausible pictures procedurally from the prompt and seed: a KSampler takes time per step and sends
progress like the real one, VAEDecode paints frames, SaveVideo writes a real MP4 with PyAV.
"""
from __future__ import annotations

import hashlib
import math
import random
from fractions import Fraction
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from backlot.standins.comfyui.nodes import Images, RunContext, _float, _int, _next_counter, _spec

CHECKPOINTS = ["sd_xl_base_1.0.safetensors", "v1-5-pruned-emaonly.safetensors", "flux1-schnell-fp8.safetensors"]
UNETS = ["wan2.1_t2v_1.3B_fp16.safetensors", "wan2.1_i2v_480p_14B_fp8_e4m3fn.safetensors"]
CLIPS = ["umt5_xxl_fp8_e4m3fn_scaled.safetensors", "clip_l.safetensors"]
VAES = ["wan_2.1_vae.safetensors", "ae.safetensors"]
UPSCALERS = ["RealESRGAN_x4plus.pth", "4x-UltraSharp.pth"]
# GET /models/{folder}: the same lists the loaders offer (set in place by --checkpoints / --models).
FOLDER_FILES = {"checkpoints": CHECKPOINTS, "diffusion_models": UNETS, "text_encoders": CLIPS, "vae": VAES,
                "upscale_models": UPSCALERS}
# GET /view_metadata/{folder}: the safetensors metadata of files that carry some (set by --model-arch).
METADATA: dict[str, dict[str, str]] = {}
# CLIPLoader's ``type`` choices on ComfyUI 0.8.0 (Flux's two encoders load through DualCLIPLoader instead).
CLIP_TYPES = ["stable_diffusion", "stable_cascade", "sd3", "stable_audio", "mochi", "ltxv", "pixart", "cosmos",
              "lumina2", "wan", "hidream", "chroma", "ace", "omnigen2", "qwen_image", "hunyuan_image", "flux2", "ovis"]
SAMPLERS = ["euler", "euler_ancestral", "heun", "dpmpp_2m", "dpmpp_2m_sde", "uni_pc", "lcm"]
SCHEDULERS = ["simple", "normal", "karras", "exponential", "sgm_uniform", "beta"]


def _seed_of(*parts: Any) -> int:
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "big")


def model_specs() -> dict[str, dict[str, Any]]:
    """object_info entries for the model nodes."""
    cond, latent = ["CONDITIONING"], ["LATENT"]
    return {
        "CheckpointLoaderSimple": _spec({"ckpt_name": [CHECKPOINTS, {}]}, ["MODEL", "CLIP", "VAE"], "loaders"),
        "UNETLoader": _spec({"unet_name": [UNETS, {}], "weight_dtype": [["default", "fp8_e4m3fn", "fp8_e5m2"], {}]},
                            ["MODEL"], "advanced/loaders"),
        "CLIPLoader": _spec({"clip_name": [CLIPS, {}], "type": [CLIP_TYPES, {}]}, ["CLIP"], "advanced/loaders",
                            optional={"device": [["default", "cpu"], {"advanced": True}]}),
        "VAELoader": _spec({"vae_name": [VAES, {}]}, ["VAE"], "loaders"),
        "UpscaleModelLoader": _spec({"model_name": [UPSCALERS, {}]}, ["UPSCALE_MODEL"], "loaders",
                                    module="comfy_extras.nodes_upscale_model"),
        "CLIPTextEncode": _spec({"text": ["STRING", {"multiline": True, "dynamicPrompts": True}], "clip": ["CLIP"]},
                                ["CONDITIONING"], "conditioning"),
        "EmptyLatentImage": _spec({"width": _int(512, 16, 16384, 8), "height": _int(512, 16, 16384, 8),
                                   "batch_size": _int(1, 1, 4096, None)}, latent, "latent"),
        "EmptyHunyuanLatentVideo": _spec({"width": _int(848, 16, 16384, 16), "height": _int(480, 16, 16384, 16),
                                          "length": _int(25, 1, 16384, 4), "batch_size": _int(1, 1, 4096, None)},
                                         latent, "latent/video", module="comfy_extras.nodes_hunyuan"),
        "KSampler": _spec({"model": ["MODEL"], "seed": _int(0, 0, 0xFFFFFFFFFFFFFFFF, None, control_after_generate=True),
                           "steps": _int(20, 1, 10000, None), "cfg": _float(8.0, 0.0, 100.0, 0.1),
                           "sampler_name": [SAMPLERS, {}], "scheduler": [SCHEDULERS, {}], "positive": cond,
                           "negative": cond, "latent_image": latent, "denoise": _float(1.0, 0.0, 1.0, 0.01)},
                          latent, "sampling"),
        "VAEDecode": _spec({"samples": latent, "vae": ["VAE"]}, ["IMAGE"], "latent"),
        "VAEEncode": _spec({"pixels": ["IMAGE"], "vae": ["VAE"]}, latent, "latent"),
        "ImageUpscaleWithModel": _spec({"upscale_model": ["UPSCALE_MODEL"], "image": ["IMAGE"]}, ["IMAGE"],
                                       "image/upscaling", module="comfy_extras.nodes_upscale_model"),
        "WanImageToVideo": _spec({"positive": cond, "negative": cond, "vae": ["VAE"], "width": _int(832, 16, 16384, 16),
                                  "height": _int(480, 16, 16384, 16), "length": _int(81, 1, 16384, 4),
                                  "batch_size": _int(1, 1, 4096, None)},
                                 ["CONDITIONING", "CONDITIONING", "LATENT"], "conditioning/video_models",
                                 module="comfy_extras.nodes_wan",
                                 optional={"clip_vision_output": ["CLIP_VISION_OUTPUT", {}], "start_image": ["IMAGE", {}]},
                                 names=["positive", "negative", "latent"]),
        "CreateVideo": _spec({"images": ["IMAGE", {}], "fps": _float(30.0, 1.0, 120.0, 1.0)}, ["VIDEO"], "image/video",
                             module="comfy_extras.nodes_video", optional={"audio": ["AUDIO", {}]}),
        "SaveVideo": _spec({"video": ["VIDEO", {}], "filename_prefix": ["STRING", {"default": "video/ComfyUI"}],
                            "format": [["auto", "mp4"], {"default": "auto"}], "codec": [["auto", "h264"], {"default": "auto"}]},
                           [], "image/video", output_node=True, module="comfy_extras.nodes_video",
                           hidden={"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}),
    }


def checkpoint_loader(ctx: RunContext, ckpt_name: str) -> tuple[Any, Any, Any]:
    """Pretend to load a checkpoint (takes load time and VRAM like one)."""
    ctx.vram_used(2 * 1024**3)
    ctx.work(0.3)
    return ({"model": ckpt_name}, {"clip": ckpt_name}, {"vae": ckpt_name})


def unet_loader(ctx: RunContext, unet_name: str, weight_dtype: str) -> tuple[Any]:
    """Pretend to load a diffusion model."""
    ctx.vram_used(3 * 1024**3)
    ctx.work(0.3)
    return ({"model": unet_name},)


def clip_loader(ctx: RunContext, clip_name: str, type: str,  # noqa: A002 - ComfyUI's input name
                device: str = "default") -> tuple[Any]:
    """Pretend to load a text encoder."""
    return ({"clip": clip_name},)


def vae_loader(ctx: RunContext, vae_name: str) -> tuple[Any]:
    """Pretend to load a VAE."""
    return ({"vae": vae_name},)


def upscale_model_loader(ctx: RunContext, model_name: str) -> tuple[Any]:
    """Pretend to load an upscaler; the factor comes from its name (4x...)."""
    return ({"name": model_name, "scale": 4 if "4x" in model_name.lower() or "x4" in model_name.lower() else 2},)


def clip_text_encode(ctx: RunContext, text: str, clip: Any) -> tuple[Any]:
    """Conditioning that remembers its text."""
    return ({"text": text},)


def empty_latent_image(ctx: RunContext, width: int, height: int, batch_size: int) -> tuple[Any]:
    """A blank latent of the given size."""
    return ({"width": width, "height": height, "batch": batch_size, "frames": 1},)


def empty_video_latent(ctx: RunContext, width: int, height: int, length: int, batch_size: int) -> tuple[Any]:
    """A blank video latent (``length`` frames)."""
    return ({"width": width, "height": height, "batch": batch_size, "frames": length},)


def ksampler(ctx: RunContext, model: Any, seed: int, steps: int, cfg: float, sampler_name: str, scheduler: str,
             positive: Any, negative: Any, latent_image: Any, denoise: float) -> tuple[Any]:
    """Take time per step, sending ComfyUI's step progress; the result remembers prompt and seed."""
    pixels = latent_image["width"] * latent_image["height"] * latent_image["frames"] * latent_image["batch"]
    per_step = 0.02 + pixels / 1e6 * 0.05
    ctx.vram_used(pixels * 16)
    ctx.progress(0, steps)
    scene = _paint(max(16, latent_image["width"] // 4), max(16, latent_image["height"] // 4),
                   str(positive.get("text", "")), seed)
    noise = Image.effect_noise(scene.size, 80).convert("RGB")
    for step in range(1, steps + 1):
        ctx.work(per_step)
        ctx.progress(step, steps, ("JPEG", Image.blend(noise, scene, step / steps)))  # the latent, clearing up
    return ({**latent_image, "seed": seed, "text": positive.get("text", ""), "denoise": denoise,
             "source": latent_image.get("source"), "cfg": cfg},)


def _paint(width: int, height: int, text: str, seed: int, t: float = 0.0) -> Image.Image:
    """A small painted scene whose palette and layout follow the prompt and seed."""
    rng = random.Random(_seed_of(text, seed))
    top = np.array([rng.randrange(256) for _ in range(3)], dtype=np.float32)
    bottom = np.array([rng.randrange(256) for _ in range(3)], dtype=np.float32)
    ys = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    sky = (top * (1 - ys) + bottom * ys).repeat(width, axis=1)
    im = Image.fromarray(sky.clip(0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(im)
    horizon = int(height * rng.uniform(0.55, 0.8))
    ground = tuple(rng.randrange(40, 160) for _ in range(3))
    draw.rectangle([0, horizon, width, height], fill=ground)
    for _ in range(rng.randrange(2, 6)):
        r = rng.uniform(0.04, 0.15) * min(width, height)
        cx = (rng.uniform(0, 1) + 0.15 * math.sin(2 * math.pi * t + rng.uniform(0, 6))) % 1.0 * width
        cy = rng.uniform(0.1, 0.6) * height
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=tuple(rng.randrange(256) for _ in range(3)))
    return im.filter(ImageFilter.GaussianBlur(radius=max(1, min(width, height) // 256)))


def vae_decode(ctx: RunContext, samples: Any, vae: Any) -> tuple[Images]:
    """Paint the latent: one image per batch item, or one per frame for video latents."""
    w, h, frames = samples["width"], samples["height"], samples["frames"]
    images: Images = []
    for b in range(samples["batch"]):
        for f in range(frames):
            im = _paint(w, h, samples.get("text", ""), samples.get("seed", 0) + b, f / max(1, frames))
            src = samples.get("source")
            if src is not None and samples.get("denoise", 1.0) < 1.0:
                im = Image.blend(src.resize((w, h)).convert("RGB"), im, samples["denoise"])
            images.append(im)
    ctx.work(len(images) * w * h / 1e6 * 0.02)
    return (images,)


def vae_encode(ctx: RunContext, pixels: Images, vae: Any) -> tuple[Any]:
    """A latent that keeps the source picture for img2img."""
    im = pixels[0]
    return ({"width": im.width, "height": im.height, "batch": 1, "frames": 1, "source": im},)


def upscale_with_model(ctx: RunContext, upscale_model: Any, image: Images) -> tuple[Images]:
    """Lanczos-upscale by the model's factor, with the time a model would take."""
    out = [im.resize((im.width * upscale_model["scale"], im.height * upscale_model["scale"]), Image.Resampling.LANCZOS)
           .filter(ImageFilter.UnsharpMask(2, 80, 2)) for im in image]
    ctx.work(sum(im.width * im.height for im in out) / 1e6 * 0.2)
    return (out,)


def wan_image_to_video(ctx: RunContext, positive: Any, negative: Any, vae: Any, width: int, height: int, length: int,
                       batch_size: int, clip_vision_output: Any = None,
                       start_image: Images | None = None) -> tuple[Any, Any, Any]:
    """Video latent conditioned on a start image."""
    latent = {"width": width, "height": height, "batch": batch_size, "frames": length,
              "source": start_image[0] if start_image else None, "denoise": 0.7 if start_image else 1.0}
    return (positive, negative, latent)


def create_video(ctx: RunContext, images: Images, fps: float, audio: Any = None) -> tuple[Any]:
    """Frames plus a frame rate."""
    return ({"frames": images, "fps": fps},)


def save_video(ctx: RunContext, video: Any, filename_prefix: str, format: str, codec: str) -> dict[str, Any]:  # noqa: A002
    """Write an H.264 MP4 to the output folder; ui like ComfyUI's PreviewVideo."""
    import av

    subfolder, _, base = filename_prefix.replace("\\", "/").rpartition("/")
    folder = ctx.output_dir / subfolder
    folder.mkdir(parents=True, exist_ok=True)
    counter = max(_next_counter(folder, base), 1)
    while (folder / f"{base}_{counter:05}_.mp4").exists():
        counter += 1
    name = f"{base}_{counter:05}_.mp4"
    frames: Images = video["frames"]
    w, h = frames[0].width // 2 * 2, frames[0].height // 2 * 2
    with av.open(str(folder / name), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(round(video["fps"] * 1000), 1000))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for im in frames:
            frame = av.VideoFrame.from_ndarray(np.asarray(im.convert("RGB").resize((w, h))), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return {"ui": {"images": [{"filename": name, "subfolder": subfolder, "type": "output"}], "animated": [True]}}


MODEL_FUNCTIONS = {
    "CheckpointLoaderSimple": checkpoint_loader, "UNETLoader": unet_loader, "CLIPLoader": clip_loader,
    "VAELoader": vae_loader, "UpscaleModelLoader": upscale_model_loader, "CLIPTextEncode": clip_text_encode,
    "EmptyLatentImage": empty_latent_image, "EmptyHunyuanLatentVideo": empty_video_latent, "KSampler": ksampler,
    "VAEDecode": vae_decode, "VAEEncode": vae_encode, "ImageUpscaleWithModel": upscale_with_model,
    "WanImageToVideo": wan_image_to_video, "CreateVideo": create_video, "SaveVideo": save_video,
}
