"""The tasks Backlot runs, as the CLI, the window and the socket API see them."""
from __future__ import annotations

TASKS = ("quick_preview", "text_to_video", "image_to_video", "text_to_image", "character_consistency", "upscale",
         "voice_conversion", "sound_effects", "ambient_audio", "text")
# VRAM a task needs (GiB) until Backlot has learned it from finished jobs.
DEFAULT_VRAM_GIB = {"quick_preview": 6.0, "text_to_video": 12.0, "image_to_video": 14.0, "text_to_image": 6.0,
                    "character_consistency": 8.0, "upscale": 3.0, "voice_conversion": 2.0, "sound_effects": 4.0,
                    "ambient_audio": 4.0, "text": 0.0}
