"""Blender side of the session: placeholder strips, imported results, the scene's saved jobs (``bpy`` only here)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import bpy

from . import compat
from .jobbook import COLOURS, SCENE_KEY, Tracked, free_channel, strip_name

KEY_PROP, JOB_PROP, PROMPT_PROP, ERROR_PROP = "backlot_key", "backlot_job", "backlot_prompt", "backlot_error"
TEXT_LIMIT = 1000  # characters of a text result shown in a text strip
REDRAW_AREAS = ("SEQUENCE_EDITOR", "VIEW_3D")


def occupied(scene: Any, exclude: tuple[Any, ...] = ()) -> list[tuple[int, int, int]]:
    """(channel, start, end) of the scene's top-level strips."""
    return [(s.channel, s.frame_final_start, s.frame_final_end) for s in compat.top_strips(scene) if s not in exclude]


def place_placeholder(scene: Any, rec: Tracked) -> Any:
    """Add the colour strip that stands for a job until its result arrives."""
    ed = scene.sequence_editor_create()
    strip = compat.new_effect(compat.strips(ed), name=rec.label, type="COLOR", channel=rec.channel,
                              frame_start=rec.frame, length=rec.length)
    strip.color = COLOURS["sending"]
    strip[KEY_PROP] = rec.key
    strip[PROMPT_PROP] = rec.prompt
    return strip


def find_placeholder(scene: Any, rec: Tracked) -> Any:
    """The job's placeholder strip, or None when the user deleted it."""
    return next((s for s in compat.every_strip(scene) if s.type == "COLOR" and s.get(KEY_PROP) == rec.key), None)


def result_strips(scene: Any, rec: Tracked) -> list[Any]:
    """The strips already holding this job's result (placed before, e.g. in a file saved mid-import)."""
    if not rec.job:
        return []
    return [s for s in compat.every_strip(scene) if s.get(JOB_PROP) == rec.job and s.get(KEY_PROP) != rec.key]


def _remove_all(coll: Any, made: list[Any]) -> None:
    """Undo a partial import: effects first, since removing a speed strip's input removes the speed strip too."""
    for strip in sorted(made, key=lambda s: s.type != "SPEED"):
        try:
            coll.remove(strip)
        except (ReferenceError, RuntimeError):  # already gone with its input
            pass


class BlenderTimeline:
    """The ``TimelineHost`` the session drives inside Blender."""

    def __init__(self) -> None:
        self._shown: dict[str, tuple[str, str, str | None, str]] = {}  # key -> what its placeholder shows

    def update_placeholder(self, rec: Tracked) -> None:
        """Rename and recolour a job's placeholder strip when what it shows changed."""
        shown = (rec.label, rec.state, rec.job, rec.import_error)
        if self._shown.get(rec.key) == shown:  # progress alone changes nothing on the strip
            return
        strip = find_placeholder(bpy.data.scenes.get(rec.scene), rec)
        if strip is None:
            return
        self._shown[rec.key] = shown
        state = "import failed" if rec.import_error else rec.state
        name = rec.label if state in ("sending", "queued", "running") else f"{rec.label} {state}"
        if strip.name != name:
            strip.name = name
        colour = COLOURS["failed"] if rec.import_error else COLOURS.get(rec.state, COLOURS["running"])
        if tuple(round(c, 3) for c in strip.color) != colour:  # writing RNA costs even when unchanged
            strip.color = colour
        if rec.job and strip.get(JOB_PROP) != rec.job:
            strip[JOB_PROP] = rec.job
        if strip.get(ERROR_PROP, "") != rec.import_error:  # why the result is not on the timeline
            strip[ERROR_PROP] = rec.import_error

    def remove_placeholder(self, rec: Tracked) -> None:
        """Delete a job's placeholder strip."""
        scene = bpy.data.scenes.get(rec.scene)
        strip = find_placeholder(scene, rec)
        if strip is not None:
            compat.strips(scene.sequence_editor).remove(strip)

    def import_result(self, rec: Tracked, kind: str, path: str) -> list[str]:
        """Replace the placeholder with the result where the placeholder is now; returns the strip names.

        All or nothing: the result's strips are made first, off to the side; if any step fails they are
        removed again and the placeholder stays, so a retry never adds a second copy. A result already
        on the timeline (a file saved mid-import) is taken as it is.
        """
        scene = bpy.data.scenes.get(rec.scene)
        if scene is None:
            raise ValueError(f"the scene {rec.scene!r} is gone")
        already = result_strips(scene, rec)
        if already:
            self.remove_placeholder(rec)
            return [s.name for s in already]
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path} does not exist on this computer")
        placeholder = find_placeholder(scene, rec)
        frame, channel, length = rec.frame, rec.channel, rec.length
        if placeholder is not None:  # the user may have moved it
            frame, channel, length = (placeholder.frame_final_start, placeholder.channel,
                                      placeholder.frame_final_duration)
        coll = compat.strips(scene.sequence_editor_create())
        staging = max([c for c, _, _ in occupied(scene)] + [0]) + 3  # empty for any range: nothing overlaps
        made: list[Any] = []
        try:
            self._make(coll, scene, made, kind, path, strip_name(rec.prompt), staging, frame, length)
            for new in made:
                new[JOB_PROP] = rec.job or rec.sent or ""
                new[PROMPT_PROP] = rec.prompt
            span = max(s.channel for s in made) - staging + 1
            target = free_channel(occupied(scene, (*made, placeholder)), frame,
                                  max(s.frame_final_duration for s in made), span=span, lowest=channel)
        except Exception:
            _remove_all(coll, made)
            raise
        if placeholder is not None:
            coll.remove(placeholder)
        for new in sorted(made, key=lambda s: s.channel):  # lowest first: each moves into free channels
            new.channel = target + new.channel - staging
        return [s.name for s in made]

    @staticmethod
    def _make(coll: Any, scene: Any, made: list[Any], kind: str, path: str, name: str, channel: int, frame: int,
              length: int) -> None:
        """Add the strips for one result from ``channel`` up, appending each to ``made`` as soon as it exists."""
        if kind == "video":
            movie = coll.new_movie(name=name, filepath=path, channel=channel, frame_start=frame)
            made.append(movie)
            speed = compat.play_at_own_rate(coll, movie, scene)
            if speed is not None:
                made.append(speed)
            try:
                sound = coll.new_sound(name=name, filepath=path, channel=channel + len(made), frame_start=frame)
            except RuntimeError:  # no audio stream, or a Blender built without sound
                sound = None
            if sound is not None and sound.sound is not None and sound.sound.samplerate > 0:
                made.append(sound)
            elif sound is not None:  # Blender makes a 1-frame strip of a silent clip's missing sound
                coll.remove(sound)
        elif kind == "audio":
            try:
                made.append(coll.new_sound(name=name, filepath=path, channel=channel, frame_start=frame))
            except RuntimeError as err:
                if "Audaspace" in str(err):
                    raise RuntimeError("this Blender was built without sound support "
                                       "(PyPI's bpy 4.2 module is; Blender from blender.org has it)") from err
                raise
        elif kind == "image":
            image = coll.new_image(name=name, filepath=path, channel=channel, frame_start=frame)
            made.append(image)
            image.frame_final_duration = length
        else:
            text = compat.new_effect(coll, name=name, type="TEXT", channel=channel, frame_start=frame, length=length)
            made.append(text)
            text.text = Path(path).read_text(encoding="utf-8", errors="replace")[:TEXT_LIMIT]

    def save_scene(self, scene: str, text: str) -> None:
        """Store a scene's tracked jobs in its custom property."""
        sc = bpy.data.scenes.get(scene)
        if sc is not None and sc.get(SCENE_KEY) != text:
            sc[SCENE_KEY] = text

    def playhead(self) -> tuple[str, int, float]:
        """The scene the sequencer shows, its current frame and frames per second."""
        scene = compat.editing_scene(bpy.context)
        return scene.name, int(scene.frame_current), compat.scene_fps(scene)

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
