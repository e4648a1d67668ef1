"""Builds the API server for a control center (the composition root calls it)."""
from __future__ import annotations

import asyncio

from backlot.services.api.dispatch import Methods
from backlot.services.api.handlers import ControlFacade, Handlers
from backlot.services.api.server import ApiServer, Limits
from backlot.services.api.token import ensure_token
from backlot.services.config import Settings


async def create_server(center: ControlFacade, limits: Limits | None = None) -> ApiServer:
    """The API server for a control center: its token file ensured, its methods bound (not started yet)."""
    settings = center.settings
    token = await asyncio.to_thread(ensure_token, settings.paths.token_file)
    handlers = Handlers(center)
    return ApiServer(settings.api_host, settings.api_port, token, Methods.collect(handlers, handlers.closed), limits,
                     allow_remote=settings.api_host != Settings.model_fields["api_host"].default)
