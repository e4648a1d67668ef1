"""Where a service record came from decides its lifecycle; forgetting is published; logs reach the bus."""
from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from aiohttp import web

from backlot.services.config import load_settings
from backlot.services.control import ControlCenter
from backlot.services.events import EventBus, LogRecorded, ServiceForgotten, ServiceUpdated
from backlot.services.logbus import BusLogHandler
from backlot.services.models import Origin
from tests.helpers import EventWaiter, serve


def settings_for(*urls: str, **extra: Any) -> Any:
    return load_settings(cli={"urls": list(urls), "scan_default_ports": False, "discovery_budget": 1.0,
                              "health_interval": 0.3, "health_timeout": 1.0, **extra})


async def openai_models(_: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": [{"id": "local-model", "object": "model"}]})


async def test_a_cloud_model_outlives_discovery_rounds_unpolled_while_a_silent_url_is_listed_down() -> None:
    cloud_id = "llm@openai:443"
    center: ControlCenter | None = None
    try:
        async with serve({"/v1/models": openai_models}) as url:
            center = ControlCenter(settings_for(url, llm_models=["gpt-4o-mini"]))
            await center.start()  # the first discovery round
            local_id = f"llm@{url.removeprefix('http://')}"
            assert center.services[cloud_id].origin is Origin.CLOUD
            assert center.services[local_id].origin is Origin.CONFIGURED
            assert cloud_id in center.cloud and cloud_id not in center.discovery.services
            waiter = EventWaiter(center.bus, ServiceUpdated)
            await center.discover()
        # The configured server is gone now; the cloud model never was discovery's to lose.
        await center.discover()
        waiter.close()
        assert [e.record.id for e in waiter.events if "vanished" in e.changes] == [local_id]
        assert local_id in center.monitors and not center.services[local_id].present  # still listed, as down
        rec = center.services[cloud_id]
        assert rec.present and rec.to_dict()["origin"] == "cloud"
        assert cloud_id not in center.monitors and cloud_id not in center.breakers  # never health-polled
        decision = center.router.route("text", advance=False)
        assert decision.chosen == cloud_id, decision.explain()
    finally:
        if center is not None:
            await center.stop()


async def test_forget_publishes_service_forgotten_for_discovered_and_cloud_services() -> None:
    async with serve({"/v1/models": openai_models}) as url:
        center = ControlCenter(settings_for(url, llm_models=["gpt-4o-mini"]))
        try:
            await center.start()
            local_id = f"llm@{url.removeprefix('http://')}"
            forgotten: list[str] = []
            center.bus.subscribe(lambda e: forgotten.append(e.service_id), ServiceForgotten)
            assert await center.forget(local_id) and await center.forget("llm@openai:443")
            assert not await center.forget("llm@openai:443")  # only once
            assert forgotten == [local_id, "llm@openai:443"]
            assert local_id not in center.services and "llm@openai:443" not in center.services
            assert local_id not in center.monitors
        finally:
            await center.stop()


async def test_log_records_from_any_thread_become_events_without_recursion() -> None:
    bus = EventBus()
    logger = logging.getLogger("backlot.test.logbus")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    handler = BusLogHandler(bus, asyncio.get_running_loop())
    handler.install(logger)
    got: list[LogRecorded] = []
    two = asyncio.Event()

    def on_log(event: LogRecorded) -> None:
        got.append(event)
        logger.info("subscriber saw %s", event.message)  # would feed back forever without the guard
        if len(got) == 2:
            two.set()

    bus.subscribe(on_log, LogRecorded)
    try:
        logger.warning("comfyui@127.0.0.1:8188 is down:\nconnection refused")
        thread = threading.Thread(target=lambda: logger.error("from a worker", extra={"service": "rvc@h:5050"}))
        thread.start()
        thread.join()
        await asyncio.wait_for(two.wait(), 5)
        for _ in range(3):  # give a feedback loop, if any, the chance to show itself
            await asyncio.sleep(0)
        assert [(e.level, e.message, e.service) for e in got] == [
            ("WARNING", "comfyui@127.0.0.1:8188 is down: connection refused", "comfyui@127.0.0.1:8188"),
            ("ERROR", "from a worker", "rvc@h:5050")]
        assert all(e.logger == "backlot.test.logbus" and e.at > 0 for e in got)
    finally:
        handler.remove(logger)
        logger.propagate = True


async def test_control_center_installs_the_log_handler_and_removes_it_at_stop() -> None:
    root = logging.getLogger()
    before = list(root.handlers)
    center = ControlCenter(settings_for(), discover_on_start=False)
    await center.start()
    try:
        added = [h for h in root.handlers if h not in before]
        assert len(added) == 1 and isinstance(added[0], BusLogHandler) and added[0].bus is center.bus
        waiter = EventWaiter(center.bus, LogRecorded)
        logging.getLogger("backlot.services.test").warning("a line for the log view")
        event = await waiter.wait(lambda e: e.message == "a line for the log view", 5)
        assert event.level == "WARNING" and event.to_dict()["logger"] == "backlot.services.test"
        waiter.close()
    finally:
        await center.stop()
    assert root.handlers == before
