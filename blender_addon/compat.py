"""The sequencer API as it differs between Blender 3.4 and 5.0, in one place (``bpy`` objects passed in).

What differs (checked in Debian's 3.4.1 and PyPI's ``bpy`` 4.2.23, 4.5.15 and 5.0.1):

- the strips of a sequence editor: ``sequences``/``sequences_all`` up to 4.4, both names in 4.5,
  only ``strips``/``strips_all`` from 5.0;
- ``new_effect()``: ``frame_end=`` and ``seq1=`` up to 4.2, ``input1=`` from 4.3/4.4, ``length=``
  instead of ``frame_end=`` from 5.0;
- movie strips have ``speed_factor`` only up to 3.x; a Speed Control effect strip in STRETCH mode
  plays a clip at its own frame rate in every version (``retiming_keys`` crash the 4.2 and 5.0
  module builds);
- 5.0's sequencer shows the workspace's ``sequencer_scene``, which may differ from the active scene.

Each difference is read off the running Blender's RNA, not its version number, so releases in
between (4.3, 4.4) take whichever form they have.
"""
from __future__ import annotations

from typing import Any

_EFFECT_ARGS: dict[str, frozenset[str]] = {}  # strips collection type -> new_effect's parameter names


def _effect_args(coll: Any) -> frozenset[str]:
    """The parameter names of ``new_effect`` on a strips collection."""
    rna = coll.bl_rna
    if rna.identifier not in _EFFECT_ARGS:
        _EFFECT_ARGS[rna.identifier] = frozenset(rna.functions["new_effect"].parameters.keys())
    return _EFFECT_ARGS[rna.identifier]


def _uses_strips(ed: Any) -> bool:
    return "strips" in ed.bl_rna.properties


def strips(ed: Any) -> Any:
    """The top-level strips collection of a sequence editor (where new strips are made)."""
    return ed.strips if _uses_strips(ed) else ed.sequences


def all_strips(ed: Any) -> Any:
    """Every strip of a sequence editor, those inside meta strips too."""
    return ed.strips_all if _uses_strips(ed) else ed.sequences_all


def top_strips(scene: Any) -> list[Any]:
    """A scene's top-level strips; none when it has no sequence editor."""
    ed = scene.sequence_editor if scene is not None else None
    return list(strips(ed)) if ed is not None else []


def every_strip(scene: Any) -> list[Any]:
    """All of a scene's strips, those inside meta strips too."""
    ed = scene.sequence_editor if scene is not None else None
    return list(all_strips(ed)) if ed is not None else []


def new_effect(coll: Any, *, name: str, type: str, channel: int, frame_start: int, length: int,
               input1: Any = None) -> Any:
    """Add an effect strip ``length`` frames long (optionally on one input strip)."""
    args = _effect_args(coll)
    kwargs: dict[str, Any] = {"name": name, "type": type, "channel": channel, "frame_start": frame_start}
    if "length" in args:
        kwargs["length"] = length
    else:
        kwargs["frame_end"] = frame_start + length
    if input1 is not None:
        kwargs["input1" if "input1" in args else "seq1"] = input1
    return coll.new_effect(**kwargs)


def editing_scene(context: Any) -> Any:
    """The scene whose strips the sequencer shows: 5.0's workspace sequencer scene, else the active scene."""
    return getattr(context, "sequencer_scene", None) or context.scene


def scene_fps(scene: Any) -> float:
    """A scene's frame rate in frames per second."""
    return float(scene.render.fps) / float(scene.render.fps_base or 1.0)


def play_at_own_rate(coll: Any, movie: Any, scene: Any) -> Any:
    """Make a movie strip last as long as its clip at the scene's frame rate; returns the speed strip or None.

    Blender shows one clip frame per scene frame, so a 16 fps clip in a 24 fps scene would play 1.5x
    fast. The strip is lengthened to the clip's real duration (its last frame held) and a Speed
    Control strip in STRETCH mode above it spreads the clip's frames, in order, over that length.
    """
    fps = float(movie.fps or 0.0)
    rate = scene_fps(scene)
    content = int(movie.frame_final_duration)
    if fps <= 0 or abs(fps - rate) < 1e-3 or content < 1:
        return None
    length = max(1, round(content * rate / fps))
    movie.frame_final_duration = length
    speed = new_effect(coll, name=movie.name, type="SPEED", channel=movie.channel + 1,
                       frame_start=movie.frame_final_start, length=length, input1=movie)
    speed.speed_control = "STRETCH"
    return speed
