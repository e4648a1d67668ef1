"""Health monitoring against real servers: recovery after a kill, bad answers classified, clean stop."""
from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from backlot.services.backends import registry
from backlot.services.config import load_settings
from backlot.services.connectivity.health import HealthMonitor
from backlot.services.connectivity.metrics import Metrics
from backlot.services.connectivity.pool import ConnectionPool
from backlot.services.connectivity.resilience import Backoff, CircuitBreaker
from backlot.services.control import ControlCenter
from backlot.services.events import BreakerChanged, EventBus, HealthChanged
from backlot.services.models import ServiceKind, ServiceRecord, ServiceState
from tests.helpers import BlackHoles, EventWaiter, serve


def fast_settings(**extra: Any) -> Any:
    return load_settings(cli={"health_interval": 0.2, "reconnect_backoff_base": 0.05, "reconnect_backoff_max": 0.4,
                              "breaker_threshold": 2, "health_timeout": 1.0, "discovery_budget": 1.0, **extra})


async def test_killed_service_goes_down_opens_breaker_and_recovers_once(standin: Any, caplog: pytest.LogCaptureFixture) -> None:
    sp = standin("comfyui")
    center = ControlCenter(fast_settings(urls=[sp.url]))
    health = EventWaiter(center.bus, HealthChanged)
    breaker = EventWaiter(center.bus, BreakerChanged)
    sid = f"comfyui@127.0.0.1:{sp.port}"
    caplog.set_level(logging.INFO, logger="backlot.services.connectivity.health")
    await center.start()
    try:
        assert sid in center.services
        await health.wait(lambda e: e.service_id == sid and e.new is ServiceState.UP)
        sp.kill()
        down = await health.wait(lambda e: e.service_id == sid and e.new is ServiceState.DOWN)
        assert down.sample.error_class == "refused"
        opened = await breaker.wait(lambda e: e.service_id == sid and e.snapshot.state == "open")
        assert opened.snapshot.failures >= 2 and opened.snapshot.retry_at > opened.snapshot.opened_at
        mark = len(health.events)
        again = standin("comfyui", port=sp.port)
        up = await health.wait(lambda e: e.service_id == sid and e.new is ServiceState.UP, start=mark, timeout=10)
        assert up.sample.ok and again.alive()
        assert center.monitors[sid].breaker.state.value == "closed"
    finally:
        await center.stop()
        health.close()
        breaker.close()
    lines = [r.getMessage() for r in caplog.records if sid in r.getMessage()]
    assert len([m for m in lines if " is down" in m]) == 1, lines
    assert len([m for m in lines if "recovered" in m]) == 1, lines


async def test_stop_leaves_no_task_or_session(standin: Any) -> None:
    sp = standin("comfyui")
    before = set(asyncio.all_tasks())
    center = ControlCenter(fast_settings(urls=[sp.url]))
    waiter = EventWaiter(center.bus, HealthChanged)
    await center.start()
    await waiter.wait(lambda e: e.new is ServiceState.UP)
    assert center.pool.open_sessions >= 1 and center.monitors
    await center.stop()
    waiter.close()
    await asyncio.sleep(0)  # let cancelled callbacks run
    leftover = [t for t in asyncio.all_tasks() - before if not t.done()]
    assert leftover == [], [t.get_name() for t in leftover]
    assert center.pool.open_sessions == 0 and center.bus.subscriber_count == 0


def monitor_for(url: str, bus: EventBus, pool: ConnectionPool, timeout: float = 1.0) -> HealthMonitor:
    host_port = url.rsplit("/", 1)[-1]
    host, port = host_port.split(":")
    rec = ServiceRecord(ServiceKind("comfyui"), host, int(port), url, "comfyui")
    breaker = CircuitBreaker(rec.id, lambda: 0.0, threshold=5)
    return HealthMonitor(rec, registry.health_check, pool, bus, Metrics(), breaker, interval=1, timeout=timeout,
                         degraded_latency_ms=1000, degraded_error_rate=0.2, backoff=Backoff(0.01, 0.1, 0))


async def _garbage(request: web.Request) -> web.Response:
    return web.Response(body=b"\x00\xffnot json{{", content_type="application/json")


async def _html(request: web.Request) -> web.Response:
    return web.Response(text="<html><body>Login</body></html>", content_type="text/html")


async def _error(request: web.Request) -> web.Response:
    return web.Response(status=500, text="Internal Server Error")


async def _huge(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse()
    await resp.prepare(request)
    chunk = b"[" + b"1," * 65536
    for _ in range(200):  # ~25 MB without a Content-Length
        await resp.write(chunk)
    return resp


async def _wrong_shape(request: web.Request) -> web.Response:
    return web.json_response({"devices": "not a list"})


@pytest.mark.parametrize(("handler", "error_class"), [
    (_garbage, "bad_response"), (_html, "bad_response"), (_error, "http_error"), (_huge, "bad_response"),
    (_wrong_shape, "bad_response")])
async def test_bad_answers_are_classified_never_crash(handler: Any, error_class: str) -> None:
    bus, pool = EventBus(), ConnectionPool()
    try:
        async with serve({"/system_stats": handler, "/prompt": handler}) as url:
            monitor = monitor_for(url, bus, pool)
            first = await monitor.check_now()
            second = await monitor.check_now()
    finally:
        await pool.close()
    assert first is not None and not first.ok and first.error_class == error_class
    assert second is not None and second.error_class == error_class
    assert monitor.state is ServiceState.DOWN  # one bad answer is "degraded", the second in a row is "down"


async def test_black_holed_service_times_out_within_the_health_timeout() -> None:
    holes = BlackHoles(1)
    bus, pool = EventBus(), ConnectionPool()
    try:
        monitor = monitor_for(f"http://127.0.0.1:{holes.ports[0]}", bus, pool, timeout=0.3)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        sample = await monitor.check_now()
        elapsed = loop.time() - t0
    finally:
        await pool.close()
        holes.close()
    assert sample is not None and sample.error_class == "timeout" and elapsed < 2.0  # 0.3 s timeout + slack
    assert monitor.state is ServiceState.DEGRADED


async def test_healthy_sample_has_latency_queue_and_vram(standin: Any) -> None:
    sp = standin("comfyui", "--gpu-name", "NVIDIA RTX A6000", "--vram-total", "48", "--vram-free", "40")
    bus, pool = EventBus(), ConnectionPool()
    try:
        monitor = monitor_for(sp.url, bus, pool)
        sample = await monitor.check_now()
    finally:
        await pool.close()
    assert sample is not None and sample.ok and sample.latency_ms is not None and sample.latency_ms < 1000
    assert sample.queue_depth == 0
    assert sample.vram and sample.vram[0].total == 48 * 1024**3 and sample.vram[0].free == 40 * 1024**3
    assert monitor.state is ServiceState.UP
    assert monitor.metrics.series(f"latency:{monitor.service_id}") is not None


async def test_pool_recreates_a_session_after_a_broken_connection(standin: Any) -> None:
    sp = standin("comfyui")
    bus, pool = EventBus(), ConnectionPool()
    try:
        monitor = monitor_for(sp.url, bus, pool)
        assert (await monitor.check_now()).ok  # type: ignore[union-attr]
        first = pool.session(monitor.service_id)
        sp.kill()
        failed = await monitor.check_now()
        assert failed is not None and failed.error_class in ("refused", "reset")
        again = standin("comfyui", port=sp.port)
        assert (await monitor.check_now()).ok and again.alive()  # type: ignore[union-attr]
        assert pool.session(monitor.service_id) is not first and pool.created == 2
    finally:
        await pool.close()
    assert pool.open_sessions == 0
    with pytest.raises(RuntimeError):
        pool.session("x")
