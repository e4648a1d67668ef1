"""The use cases a command runs in its own process when no instance serves this home.

Discovering once, reading the job history read-only and importing a workflow file need no running core;
they share their code with the running core's use cases (``service``, ``workflows``).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import aiohttp

from backlot.services.application import workflows
from backlot.services.application.service import report
from backlot.services.application.views import DiscoveryReport, ImportedWorkflow
from backlot.services.backends.comfyui.library import fetch_object_info
from backlot.services.backends.comfyui.probe import KIND as COMFYUI
from backlot.services.backends.comfyui.workflows import TemplateError
from backlot.services.config import Settings
from backlot.services.connectivity.discovery import Discovery
from backlot.services.events import EventBus
from backlot.services.instance import FolderError
from backlot.services.jobs.store import JobStore
from backlot.services.jobs.validate import schema_json
from backlot.services.models import Job


async def discover(settings: Settings, hosts: Iterable[str] = (), urls: Iterable[str] = (),
                   budget: float | None = None) -> DiscoveryReport:
    """One discovery round, with nothing kept afterwards."""
    return report(await Discovery(settings, EventBus()).run(hosts=hosts, urls=urls, budget=budget))


def task_schema(settings: Settings) -> dict[str, Any]:
    """Every task's schema with the backend kinds serving it (``tasks.list``'s answer)."""
    return schema_json(settings)


async def read_jobs(settings: Settings, state: str | None = None, limit: int = 50) -> list[Job]:
    """The job history, newest first, from the store opened read-only."""
    store = await _open(settings)
    try:
        return await store.query(state=state, limit=limit)
    finally:
        await store.close()


async def read_job(settings: Settings, ref: str) -> Job | None:
    """One job by id or number from the store opened read-only."""
    store = await _open(settings)
    try:
        return await store.get(ref)
    finally:
        await store.close()


async def _open(settings: Settings) -> JobStore:
    try:  # a home that cannot hold a data folder is said so, as for every other command
        settings.data_path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise FolderError(f"cannot use the data folder {settings.data_path}: {err.strerror or err}") from err
    store = JobStore(settings.data_path / "jobs.sqlite3", read_only=True)
    await store.open()
    return store


async def import_workflow(settings: Settings, path: Path, *, name: str | None = None, task: str | None = None,
                          force: bool = False, server: str | None = None) -> ImportedWorkflow:
    """The running core's import, here: a UI-format file is converted with ``server``'s node list, else with
    that of the first ComfyUI a short discovery finds."""

    async def object_info() -> Mapping[str, Any]:
        url = server
        if url is None:
            found = await discover(settings, budget=min(settings.discovery_budget, 3.0))
            usable = [r for r in found.records if r.kind == COMFYUI and r.usable]
            if not usable:
                raise TemplateError("this is a UI-format workflow and no ComfyUI was found to convert it with; "
                                    'start one and pass --server URL, or save it with "Export (API)"')
            url = usable[0].base_url
        async with aiohttp.ClientSession() as session:
            return await fetch_object_info(session, url)

    return await workflows.import_workflow(settings, path, object_info, name=name, task=task, force=force)
