"""The addon's preferences: where Backlot runs and how to prove who we are."""
from __future__ import annotations

from typing import Any

import bpy

from . import client as rpc

ADDON = __package__ or "backlot"


def default_token_file() -> str:
    """Where a local Backlot keeps its API token (BACKLOT_HOME, else the platform's user config folder)."""
    return str(rpc.config_dir() / "api-token")


class BacklotPreferences(bpy.types.AddonPreferences):
    """Where Backlot runs and how to prove who we are."""

    bl_idname = ADDON
    host: bpy.props.StringProperty(name="Host", default=rpc.DEFAULT_HOST)  # type: ignore[valid-type]
    port: bpy.props.IntProperty(name="Port", default=rpc.DEFAULT_PORT, min=1, max=65535)  # type: ignore[valid-type]
    token: bpy.props.StringProperty(name="Token", subtype="PASSWORD",  # type: ignore[valid-type]
                                    description="Backlot's API token (leave empty to read the token file)")
    token_file: bpy.props.StringProperty(name="Token file", subtype="FILE_PATH",  # type: ignore[valid-type]
                                         default=default_token_file())
    auto_connect: bpy.props.BoolProperty(name="Connect when Blender starts", default=True)  # type: ignore[valid-type]

    def draw(self, context: Any) -> None:
        """The preferences box."""
        col = self.layout.column()
        row = col.row()
        row.prop(self, "host")
        row.prop(self, "port")
        col.prop(self, "token")
        col.prop(self, "token_file")
        col.prop(self, "auto_connect")
        col.operator("backlot.connect")
