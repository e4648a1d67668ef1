"""Blender side of the session: placeholder strips, imported results, the scene's saved jobs (``bpy`` only here)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import bpy

from .jobbook import COLOURS, SCENE_KEY, Tracked, free_channel, strip_name

KEY_PROP, JOB_PROP, PROMPT_PROP = "backlot_key", "backlot_job", "backlot_prompt"
TEXT_LIMIT = 1000  # characters of a text result shown in a text strip
REDRAW_AREAS = ("SEQUENCE_EDITOR", "VIEW_3D")


def occupied(scene: Any, exclude: tuple[Any, ...] = ()) -> list[tuple[int, int, int]]:
    """(channel, start, end) of the scene's top-level strips."""
    ed = scene.sequence_editor
    if ed is None:
        return []
    return [(s.channel, s.frame_final_start, s.frame_final_end) for s in ed.sequences if s not in exclude]


def place_placeholder(scene: Any, rec: Tracked) -> Any:
    """Add the colour strip that stands for a job until its result arrives."""
    ed = scene.sequence_editor_create()
    strip = ed.sequences.new_effect(name=rec.label, type="COLOR", channel=rec.channel, frame_start=rec.frame,
                                    frame_end=rec.frame + rec.length)
    strip.color = COLOURS["sending"]
    strip[KEY_PROP] = rec.key
    strip[PROMPT_PROP] = rec.prompt
    return strip


def find_placeholder(scene: Any, rec: Tracked) -> Any:
    """The job's placeholder strip, or None when the user deleted it."""
    ed = scene.sequence_editor if scene is not None else None
    if ed is None:
        return None
    return next((s for s in ed.sequences_all if s.type == "COLOR" and s.get(KEY_PROP) == rec.key), None)


def play_at_own_rate(movie: Any, scene: Any) -> Any:
    """Slow down or speed up a movie strip so it lasts as long as the clip (Blender 3.4 shows one frame per frame)."""
    scene_fps = scene.render.fps / scene.render.fps_base
    if movie.fps > 0 and abs(movie.fps - scene_fps) > 1e-3:  # a 16 fps clip in a 24 fps scene plays 1.5x fast
        movie.speed_factor = movie.fps / scene_fps
    return movie


class BlenderTimeline:
    """The ``TimelineHost`` the session drives inside Blender."""

    def __init__(self) -> None:
        self._shown: dict[str, tuple[str, str, str | None]] = {}  # key -> what its placeholder shows

    def update_placeholder(self, rec: Tracked) -> None:
        """Rename and recolour a job's placeholder strip when what it shows changed."""
        shown = (rec.label, rec.state, rec.job)
        if self._shown.get(rec.key) == shown:  # progress alone changes nothing on the strip
            return
        strip = find_placeholder(bpy.data.scenes.get(rec.scene), rec)
        if strip is None:
            return
        self._shown[rec.key] = shown
        name = rec.label if rec.state in ("sending", "queued", "running") else f"{rec.label} {rec.state}"
        if strip.name != name:
            strip.name = name
        colour = COLOURS.get(rec.state, COLOURS["running"])
        if tuple(round(c, 3) for c in strip.color) != colour:  # writing RNA costs even when unchanged
            strip.color = colour
        if rec.job and strip.get(JOB_PROP) != rec.job:
            strip[JOB_PROP] = rec.job

    def remove_placeholder(self, rec: Tracked) -> None:
        """Delete a job's placeholder strip."""
        scene = bpy.data.scenes.get(rec.scene)
        strip = find_placeholder(scene, rec)
        if strip is not None:
            scene.sequence_editor.sequences.remove(strip)

    def import_result(self, rec: Tracked, kind: str, path: str) -> list[str]:
        """Replace the placeholder with the result where the placeholder is now; returns the strip names."""
        scene = bpy.data.scenes.get(rec.scene)
        if scene is None:
            raise ValueError(f"the scene {rec.scene!r} is gone")
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path} does not exist on this computer")
        strip = find_placeholder(scene, rec)
        frame, channel, length = rec.frame, rec.channel, rec.length
        if strip is not None:  # the user may have moved it
            frame, channel, length = strip.frame_final_start, strip.channel, strip.frame_final_duration
            scene.sequence_editor.sequences.remove(strip)
        seqs = scene.sequence_editor_create().sequences
        staging = max([c for c, _, _ in occupied(scene)] + [0]) + 3  # empty for any range: nothing overlaps
        name = strip_name(rec.prompt)
        made: list[Any] = []
        if kind == "video":
            made.append(play_at_own_rate(seqs.new_movie(name=name, filepath=path, channel=staging,
                                                        frame_start=frame), scene))
            try:
                sound = seqs.new_sound(name=name, filepath=path, channel=staging + 1, frame_start=frame)
            except RuntimeError:  # no audio stream
                sound = None
            if sound is not None and sound.sound is not None and sound.sound.samplerate > 0:
                made.append(sound)
            elif sound is not None:  # Blender 3.4 makes a 1-frame strip of a silent clip's missing sound
                seqs.remove(sound)
        elif kind == "audio":
            made.append(seqs.new_sound(name=name, filepath=path, channel=staging, frame_start=frame))
        elif kind == "image":
            image = seqs.new_image(name=name, filepath=path, channel=staging, frame_start=frame)
            image.frame_final_duration = length
            made.append(image)
        else:
            text = seqs.new_effect(name=name, type="TEXT", channel=staging, frame_start=frame,
                                   frame_end=frame + length)
            text.text = Path(path).read_text(encoding="utf-8", errors="replace")[:TEXT_LIMIT]
            made.append(text)
        target = free_channel(occupied(scene, tuple(made)), frame, max(s.frame_final_duration for s in made),
                              span=len(made), lowest=channel)
        for offset, new in enumerate(made):
            new.channel = target + offset
            new[JOB_PROP] = rec.job or ""
            new[PROMPT_PROP] = rec.prompt
        return [s.name for s in made]

    def save_scene(self, scene: str, text: str) -> None:
        """Store a scene's tracked jobs in its custom property."""
        sc = bpy.data.scenes.get(scene)
        if sc is not None and sc.get(SCENE_KEY) != text:
            sc[SCENE_KEY] = text

    def busy(self) -> bool:
        """True while a render runs."""
        running = getattr(bpy.app, "is_job_running", None)
        return bool(running and running("RENDER"))

    def redraw(self) -> None:
        """Repaint the sequencer and 3D view sidebars."""
        wm = bpy.context.window_manager
        for window in wm.windows if wm else ():
            for area in window.screen.areas:
                if area.type in REDRAW_AREAS:
                    area.tag_redraw()


def saved_jobs() -> dict[str, str]:
    """Each scene's saved job list (JSON text) in the open file."""
    return {sc.name: str(sc.get(SCENE_KEY, "")) for sc in bpy.data.scenes if sc.get(SCENE_KEY)}
