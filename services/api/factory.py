"""Builds the API server for a control center (the composition root calls it)."""
from __future__ import annotations

import asyncio

from services.api.dispatch import Methods
from services.api.handlers import ControlFacade, Handlers
from services.api.server import ApiServer, Limits
from services.api.token import ensure_token
from services.config import Settings


async def create_server(center: ControlFacade, limits: Limits | None = None) -> ApiServer:
    """The API server for a control center: its token file ensured, its methods bound (not started yet)."""
    settings = center.settings
    token = await asyncio.to_thread(ensure_token, settings.paths.token_file)
    handlers = Handlers(center)
    return ApiServer(settings.api_host, settings.api_port, token, Methods.collect(handlers, handlers.closed), limits,
                     allow_remote=settings.api_host != Settings.model_fields["api_host"].default)
