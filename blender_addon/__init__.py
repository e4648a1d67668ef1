"""Backlot for Blender: generate video, images and sound from the sequencer through a running Backlot.

Installed in Blender as the module ``backlot``; outside Blender only ``client`` and the pure modules
(``schema``, ``jobbook``, ``session``, ``package``) import, so the command line can share the client.
"""
from __future__ import annotations

bl_info = {
    "name": "Backlot",
    "author": "Backlot",
    "version": (0, 1, 0),
    "blender": (3, 4, 0),
    "location": "Video Sequencer and 3D Viewport > Sidebar > Backlot",
    "description": "Generate clips, images and sound through Backlot and place them on the timeline",
    "category": "Sequencer",
}


def register() -> None:
    """Blender's entry point when the addon is enabled."""
    from . import ui

    ui.register()


def unregister() -> None:
    """Blender's entry point when the addon is disabled."""
    from . import ui

    ui.unregister()
