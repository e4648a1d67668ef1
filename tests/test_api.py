"""The socket API's wire rules against a real server: auth, framing, validation, limits, start and stop."""
from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from backlot.cli import commands
from backlot.services.api.dispatch import Methods
from backlot.services.api.server import ApiServer, ApiStartError, Limits
from backlot.services.api.token import ensure_token, read_token
from backlot.services.config import load_settings
from backlot.services.control import ControlCenter
from tests.apiclient import (
    Api,
    RawClient,
    assert_response,
    center_settings,
    running_api,
)
from tests.helpers import BlackHoles


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    async with running_api() as a:
        yield a


async def test_the_token_file_is_owner_only_and_reused(backlot_home: Path) -> None:
    path = load_settings().paths.token_file
    token = ensure_token(path)
    assert len(token) >= 40 and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    os.chmod(path, 0o644)
    assert ensure_token(path) == token == read_token(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    path.unlink()
    with pytest.raises(FileNotFoundError):
        read_token(path)
    assert ensure_token(path) != token  # a deleted file means a new secret


async def test_nothing_but_hello_with_the_right_token_is_served(api: Api) -> None:
    c = await api.client(hello=False)
    for method in ("session.ping", "jobs.list", "app.shutdown"):
        msg = await c.call(method)
        assert msg["error"]["code"] == -32001 and "result" not in msg
    assert await c.closed(), "three failed requests before hello close the connection"
    assert not api.center.shutdown_requested.is_set()


async def test_three_wrong_tokens_close_the_connection_and_others_keep_working(api: Api,
                                                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    good = await api.client()
    bad = await api.client(hello=False)
    for i in range(3):
        msg = await bad.call("session.hello", {"token": f"wrong-{i}", "client": "x", "protocol": 1})
        assert msg["error"] == {"code": -32001, "message": "unauthorized: wrong token"}
        assert (await good.result("session.ping")) == {"pong": True}
    assert await bad.closed()
    again = await api.client(hello=False)
    for _ in range(2):
        assert (await again.call("session.hello", {"token": "nope"}))["error"]["code"] == -32001
    assert (await again.hello(api.token))["result"]["protocol"] == 1  # two mistakes are forgiven
    assert (await again.result("session.ping")) == {"pong": True}
    assert api.token not in caplog.text  # the secret is never logged


async def test_hello_with_another_protocol_is_refused(api: Api) -> None:
    c = await api.client(hello=False)
    msg = await c.call("session.hello", {"token": api.token, "client": "x", "protocol": 2})
    assert msg["error"]["code"] == -32602 and "protocol 2" in msg["error"]["message"]
    assert (await c.call("session.ping"))["error"]["code"] == -32001


BAD_FRAMES = [
    (b"{not json", -32700, None),
    (b"\xff\xfe\x00garbage\x80", -32700, None),
    (b"[]", -32600, None),
    (b'[{"jsonrpc":"2.0","id":1,"method":"session.ping"}]', -32600, None),
    (b'"just a string"', -32600, None),
    (b'{"jsonrpc":"1.0","id":7,"method":"session.ping"}', -32600, 7),
    (b'{"id":8,"method":"session.ping"}', -32600, 8),
    (b'{"jsonrpc":"2.0","id":1.5,"method":"session.ping"}', -32600, None),
    (b'{"jsonrpc":"2.0","id":true,"method":"session.ping"}', -32600, None),
    (b'{"jsonrpc":"2.0","id":{"a":1},"method":"session.ping"}', -32600, None),
    (b'{"jsonrpc":"2.0","id":9,"method":5}', -32600, 9),
    (b'{"jsonrpc":"2.0","id":10,"method":"session.ping","params":"x"}', -32600, 10),
    (b'{"jsonrpc":"2.0","id":11,"method":"no.such"}', -32601, 11),
    (b'{"jsonrpc":"2.0","id":12,"method":"jobs.get","params":{"job":[1]}}', -32602, 12),
    (b'{"jsonrpc":"2.0","id":13,"method":"jobs.get","params":{}}', -32602, 13),
    (b'{"jsonrpc":"2.0","id":14,"method":"jobs.get","params":{"job":"1","extra":true}}', -32602, 14),
    (b'{"jsonrpc":"2.0","id":15,"method":"jobs.get","params":[1]}', -32602, 15),
    (b'{"jsonrpc":"2.0","id":16,"method":"jobs.list","params":{"limit":"5"}}', -32602, 16),
    (b'{"jsonrpc":"2.0","id":17,"method":"jobs.list","params":{"state":"nonsense"}}', -32602, 17),
    (b'{"jsonrpc":"2.0","id":18,"method":"jobs.submit","params":{"task":"x","prompt":3}}', -32602, 18),
    (b'{"jsonrpc":"2.0","id":"s","method":"events.subscribe","params":{"topics":["nope"]}}', -32602, "s"),
]


@pytest.mark.parametrize(("frame", "code", "rid"), BAD_FRAMES, ids=[f[0][:40].decode("latin-1") for f in BAD_FRAMES])
async def test_a_bad_frame_gets_its_error_and_disturbs_no_one(api: Api, frame: bytes, code: int, rid: Any) -> None:
    other = await api.client()
    c = await api.client()
    await c.send_raw(frame + b"\n")
    msg = await c.recv()
    assert msg is not None
    assert_response(msg)
    assert msg["error"]["code"] == code and msg["id"] == rid, msg
    assert (await c.result("session.ping")) == {"pong": True}  # the same connection still works
    assert (await other.result("session.ping")) == {"pong": True}


async def test_notifications_get_no_answer_and_blank_lines_are_skipped(api: Api) -> None:
    c = await api.client()
    await c.send_raw(b'{"jsonrpc":"2.0","method":"session.ping"}\n\n   \n{"jsonrpc":"2.0","method":"no.such"}\n')
    assert (await c.response(await c.send("session.ping", rid="after")))["id"] == "after"
    assert c.inbox == []


async def test_a_10_mib_line_is_refused_without_being_held(api: Api) -> None:
    import tracemalloc

    other = await api.client()
    c = await api.client()
    chunk = b'{"jsonrpc":"2.0","id":1,"method":"session.ping","params":{"x":"' + b"a" * (64 * 1024)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        for _ in range(160):  # 10 MiB, sent piece by piece so the client holds no copy
            await c.send_raw(chunk)
        await c.send_raw(b'"}}\n')
        msg = await c.recv()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert msg is not None and msg["error"]["code"] == -32004 and msg["id"] is None, msg
    assert "1048576" in msg["error"]["message"]
    assert peak < 5 * (1 << 20), f"{peak / 2**20:.1f} MiB allocated while a 10 MiB line went by"
    assert (await c.result("session.ping")) == {"pong": True}  # the connection resynchronised at the newline
    assert (await other.result("session.ping")) == {"pong": True}


async def test_a_line_just_under_the_limit_is_served() -> None:
    async with running_api(limits=Limits(max_line=4096)) as api:
        c = await api.client()
        head = b'{"jsonrpc":"2.0","id":"big","method":"session.ping","params":{}}'
        await c.send_raw(head + b" " * (4096 - len(head) - 1) + b"\n")
        assert (await c.response("big"))["result"] == {"pong": True}
        await c.send_raw(head + b" " * 4096 + b"\n")
        assert (await c.recv())["error"]["code"] == -32004  # type: ignore[index]


async def test_a_slow_request_does_not_hold_up_a_ping_and_in_flight_requests_are_limited() -> None:
    holes = BlackHoles(1)
    try:
        async with running_api(limits=Limits(max_outstanding=1)) as api:
            c = await api.client()
            slow = await c.send("services.discover", {"urls": [f"http://127.0.0.1:{holes.ports[0]}"], "budget": 1.0})
            busy = await c.call("session.ping")
            assert busy["error"]["code"] == -32005
            assert (await c.response(slow))["result"]["timed_out"] == [f"http://127.0.0.1:{holes.ports[0]}"]
            assert (await c.result("session.ping")) == {"pong": True}
        async with running_api() as api:
            c = await api.client()
            slow = await c.send("services.discover", {"urls": [f"http://127.0.0.1:{holes.ports[0]}"], "budget": 1.0})
            ping = await c.send("session.ping")
            first = await c.recv()
            assert first is not None and first["id"] == ping  # answered while discovery still runs
            assert "result" in await c.response(slow)
    finally:
        holes.close()


async def test_connections_over_the_limit_are_refused() -> None:
    async with running_api(limits=Limits(max_connections=2)) as api:
        a, b = await api.client(), await api.client()
        extra = await api.client(hello=False)
        msg = await extra.recv()
        assert msg is not None and msg["error"]["code"] == -32005
        assert await extra.closed()
        assert (await a.result("session.ping")) == (await b.result("session.ping")) == {"pong": True}


async def test_a_silent_connection_is_closed_after_the_hello_timeout() -> None:
    async with running_api(limits=Limits(hello_timeout=0.3)) as api:
        idle = await api.client(hello=False)
        assert await idle.closed(5)
        assert api.server.connections == 0


async def test_an_unexpected_failure_is_an_internal_error_logged_with_the_request_id(
        api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def boom() -> None:
        raise RuntimeError("secret detail")

    monkeypatch.setattr(api.center.application, "services", boom)
    c = await api.client()
    msg = await c.response(await c.send("services.list", rid="req-42"))
    assert msg["error"]["code"] == -32603 and "req-42" in msg["error"]["message"]
    assert "secret detail" not in msg["error"]["message"]
    assert "req-42" in caplog.text and "services.list" in caplog.text and "secret detail" in caplog.text
    assert (await c.result("session.ping")) == {"pong": True}


async def test_binding_rules(backlot_home: Path, caplog: pytest.LogCaptureFixture) -> None:
    methods = Methods([])
    with pytest.raises(ApiStartError, match="refusing"):
        await ApiServer("0.0.0.0", 0, "t", methods).start()
    remote = ApiServer("0.0.0.0", 0, "t", methods, allow_remote=True)
    await remote.start()
    await remote.stop()
    assert "reachable from other machines" in caplog.text
    first = ApiServer("127.0.0.1", 0, "t", methods)
    await first.start()
    try:
        with pytest.raises(ApiStartError, match="api_port"):
            await ApiServer("127.0.0.1", first.port, "t", methods).start()
    finally:
        await first.stop()


async def test_stop_closes_every_connection_and_awaits_its_task() -> None:
    async with running_api() as api:
        clients = [await api.client() for _ in range(5)]
        await clients[0].send("session.ping")
        server = api.server
        await server.stop()
        for c in clients:
            assert await c.closed()
        assert server.connections == 0 and not len(server._handlers)


async def test_app_shutdown_stops_the_headless_instance(backlot_home: Path) -> None:
    settings = center_settings()
    seen: dict[str, Any] = {}
    ready = asyncio.Event()

    def on_ready(center: ControlCenter) -> None:
        seen["center"] = center
        ready.set()

    serving = asyncio.create_task(commands.serve(settings, ready=on_ready), name="serve")
    await asyncio.wait_for(ready.wait(), 30)
    center = seen["center"]
    assert center.api is not None and center.api.port > 0
    c = await RawClient.connect(center.api.port)
    try:
        await c.hello(read_token(settings.paths.token_file))
        assert (await c.result("app.shutdown")) == {"stopping": True}
        assert await asyncio.wait_for(serving, 30) == 0
        assert await c.closed()
        assert center.api is None
    finally:
        await c.close()


async def test_session_and_service_methods(api: Api) -> None:
    c = await api.client(hello=False)
    hello = (await c.hello(api.token, "blender"))["result"]
    assert hello["server"] == "backlot" and hello["protocol"] == 1 and "job.updated" in hello["topics"]
    assert (await c.result("services.list")) == {"services": []}
    found = await c.result("services.discover", {"budget": 0.5})
    assert found["services"] == [] and isinstance(found["candidates"], int)
    health = await c.result("health.snapshot")
    assert health["services"] == {} and isinstance(health["gpus"], list)
    tasks = {t["name"]: t for t in (await c.result("tasks.list"))["tasks"]}
    assert tasks["text_to_image"]["backends"][0] == "comfyui" and "text" in tasks
    flows = {w["name"]: w for w in (await c.result("workflows.list"))["workflows"]}
    assert flows["text_to_image"]["kind"] == "comfyui" and "prompt" in flows["text_to_image"]["params"]
    route = await c.result("route.explain", {"task": "text_to_image", "params": {}})
    assert route["chosen"] is None and route["no_capable_backend"] and "comfyui" in route["explanation"]
    assert (await c.call("route.explain", {"task": "juggling"}))["error"]["code"] == -32602


async def test_job_errors_carry_their_codes(api: Api) -> None:
    c = await api.client()
    assert (await c.call("jobs.submit", {"task": "text_to_image", "prompt": "x"}))["error"]["code"] == -32002
    assert (await c.call("jobs.submit", {"task": "juggling", "prompt": "x"}))["error"]["code"] == -32602
    bad = await c.call("jobs.submit", {"task": "text_to_image", "prompt": "x", "params": {"width": "wide"}})
    assert bad["error"]["code"] == -32602 and "width" in bad["error"]["message"]
    for method in ("jobs.get", "jobs.cancel", "jobs.retry", "jobs.outputs", "jobs.preview"):
        msg = await c.call(method, {"job": "nope"})
        assert msg["error"] == {"code": -32003, "message": "no job nope"}, (method, msg)
    assert (await c.call("llm.complete", {"prompt": "hi"}))["error"]["code"] == -32002
    assert (await c.result("jobs.list")) == {"jobs": []}


async def test_subscriptions_end_with_unsubscribe_and_with_the_connection(api: Api) -> None:
    bus = api.center.bus
    base = bus.subscriber_count
    a, b = await api.client(), await api.client()
    assert (await a.result("events.subscribe", {"topics": ["job.updated", "service.updated"]}))["topics"] == [
        "job.updated", "service.updated"]
    assert (await b.result("events.subscribe", {"topics": ["job.updated"]}))["topics"] == ["job.updated"]
    assert bus.subscriber_count == base + 2  # one bus subscription per topic, however many sessions
    assert (await a.result("events.unsubscribe", {"topics": ["service.updated"]}))["topics"] == ["job.updated"]
    assert bus.subscriber_count == base + 1
    assert (await a.result("events.unsubscribe"))["topics"] == []
    await b.close()
    await asyncio.wait_for(_until(lambda: bus.subscriber_count == base), 10)


async def _until(predicate: Any) -> None:
    while not predicate():
        await asyncio.sleep(0.01)


def test_frames_are_one_json_object_per_line() -> None:
    from backlot.services.api.protocol import (
        Busy,
        encode_error,
        encode_notification,
        encode_result,
    )

    lines = [encode_result(1, {"t": "é\n"}), encode_error("x", Busy("busy")), encode_notification("job.updated", {})]
    for line in lines:
        assert line.endswith(b"\n") and line.count(b"\n") == 1
        json.loads(line)
    assert json.loads(lines[1])["error"] == {"code": -32005, "message": "busy"}


async def test_the_addon_client_works_against_the_real_server(api: Api) -> None:
    from backlot.blender_addon.client import ApiClient, Notification, RpcError, Unauthorized
    from backlot.services.events import JobUpdated
    from backlot.services.models import Job

    def wrong_token() -> None:
        c = ApiClient("127.0.0.1", api.server.port, token="not-it", reconnect=False)
        try:
            with pytest.raises(Unauthorized):
                c.connect(10)
        finally:
            c.close()

    await asyncio.to_thread(wrong_token)
    client = ApiClient("127.0.0.1", api.server.port, token_file=api.center.settings.paths.token_file,
                       client_name="addon-test", topics=["job.updated"], reconnect=False)
    try:
        await asyncio.to_thread(client.connect, 10)
        assert await asyncio.to_thread(client.call, "session.ping") == {"pong": True}
        with pytest.raises(RpcError) as err:
            await asyncio.to_thread(client.call, "jobs.get", {"job": "nope"})
        assert err.value.code == -32003
        await asyncio.wait_for(_until(lambda: api.center.bus.subscriber_count > 0 and any(
            c.session.topics for c in api.server._connections.values())), 10)
        api.center.bus.publish(JobUpdated(Job(id="j1", task="text", prompt="hello")))
        msg = await asyncio.to_thread(client.next_message, 10)
        while msg is not None and not isinstance(msg, Notification):
            msg = await asyncio.to_thread(client.next_message, 10)
        assert isinstance(msg, Notification) and msg.method == "job.updated" and msg.params["job"]["id"] == "j1"
    finally:
        await asyncio.to_thread(client.close)


async def test_services_add_and_forget_are_served_under_their_documented_names(api: Api) -> None:
    holes = BlackHoles(1)
    try:
        c = await api.client()
        url = f"http://127.0.0.1:{holes.ports[0]}"
        added = await c.call("services.add", {"url": url})
        assert "result" in added, added  # the documented name (docs/socket-api.md), not a renamed one
        assert (await c.result("services.forget", {"service": "comfyui@127.0.0.1:1"})) == {"forgotten": False}
        assert (await c.call("services.add", {"url": "not a url"}))["error"]["code"] == -32602
    finally:
        holes.close()
