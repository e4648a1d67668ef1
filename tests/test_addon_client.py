"""The addon's stdlib JSON-RPC client against a real NDJSON server on 127.0.0.1 (the fake Backlot API)."""
from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from addon_fake_api import Endpoint, FakeBacklot, backlot_api, fake_backlot  # noqa: F401
from backlot.blender_addon import client as rpc
from backlot.blender_addon.client import ApiClient, Backoff, CallTimeout, NotConnected, RpcError, Unauthorized


def _until(c: ApiClient, pred, timeout: float = 10.0) -> list[rpc.Message]:
    """Messages read until ``pred(message)`` is true for one of them."""
    seen: list[rpc.Message] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = c.next_message(deadline - time.monotonic())
        if msg is None:
            break
        seen.append(msg)
        if pred(msg):
            return seen
    raise AssertionError(f"condition not met; saw {seen}")


def test_hello_then_calls(backlot_api: Endpoint, fake_backlot: FakeBacklot) -> None:
    with ApiClient(backlot_api.host, backlot_api.port, token=backlot_api.token, client_name="pytest").connect() as c:
        assert c.state == rpc.CONNECTED
        services = c.call("services.list")["services"]
        tasks = c.call("tasks.list", timeout=5)
    assert {s["kind"] for s in services} >= {"wan2gp", "comfyui"}
    assert any(t["name"] == "text_to_video" for t in tasks["tasks"])
    assert fake_backlot.calls[0] == ("session.hello", {"token": backlot_api.token, "client": "pytest", "protocol": 1})


def test_token_file_is_read_at_connect(backlot_api: Endpoint, tmp_path: Path) -> None:
    token_file = tmp_path / "api-token"
    token_file.write_text(backlot_api.token + "\n")
    with ApiClient(backlot_api.host, backlot_api.port, token_file=token_file).connect() as c:
        assert c.call("session.ping") == {"pong": True}


def test_wrong_token_is_unauthorized_and_not_retried(backlot_api: Endpoint, fake_backlot: FakeBacklot) -> None:
    c = ApiClient(backlot_api.host, backlot_api.port, token="nope", backoff=Backoff(0.01, 0.01))
    with pytest.raises(Unauthorized) as info:
        c.connect(timeout=5)
    assert info.value.code == rpc.UNAUTHORIZED == -32001
    assert "nope" not in str(info.value)  # the token never shows in an error
    assert c.state == rpc.UNAUTHORIZED_STATE
    c._thread.join(5)  # the thread ends instead of hammering the server
    assert not c._thread.is_alive()
    assert [m for m, _ in fake_backlot.calls].count("session.hello") == 1
    c.close()


def test_rpc_error_carries_code(backlot_api: Endpoint) -> None:
    with ApiClient(backlot_api.host, backlot_api.port, token=backlot_api.token).connect() as c:
        with pytest.raises(RpcError) as info:
            c.call("jobs.get", {"job": "nope"})
        assert info.value.code == rpc.UNKNOWN_JOB
        with pytest.raises(RpcError) as info:
            c.call("no.such.method")
        assert info.value.code == rpc.METHOD_NOT_FOUND


def test_not_running_fails_fast(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    c = ApiClient("127.0.0.1", port, token="t", reconnect=False)
    t0 = time.monotonic()
    with pytest.raises(NotConnected) as info:
        c.connect(timeout=5)
    assert time.monotonic() - t0 < 2
    assert info.value.code == rpc.NOT_CONNECTED
    assert "not running" in info.value.message
    with pytest.raises(NotConnected):
        c.call("session.ping")
    c.close()


def test_async_submit_and_notifications(backlot_api: Endpoint) -> None:
    with ApiClient(backlot_api.host, backlot_api.port, token=backlot_api.token, topics=["job.updated"]).connect() as c:
        req = c.call_async("jobs.submit", {"task": "text_to_image", "prompt": "a cat", "params": {}, "inputs": [],
                                           "backend": "auto"}, tag=("submit", "k1"))
        seen = _until(c, lambda m: isinstance(m, rpc.Notification) and m.params["job"]["state"] == "succeeded")
    reply = next(m for m in seen if isinstance(m, rpc.Reply) and m.id == req)
    assert reply.tag == ("submit", "k1") and reply.error is None and reply.result["state"] == "queued"
    updates = [m.params["job"] for m in seen if isinstance(m, rpc.Notification)]
    assert all(u["id"] == reply.result["id"] for u in updates)
    assert any(u["state"] == "running" for u in updates)
    assert Path(updates[-1]["outputs"][0]["path"]).is_file()


def test_reconnects_and_resubscribes_after_restart(backlot_api: Endpoint, fake_backlot: FakeBacklot) -> None:
    c = ApiClient(backlot_api.host, backlot_api.port, token=backlot_api.token, topics=["job.updated"],
                  backoff=Backoff(0.05, 0.2)).connect()
    try:
        c.drain()
        fake_backlot.close_listener()
        _until(c, lambda m: isinstance(m, rpc.StateChanged) and m.state == rpc.DISCONNECTED)
        assert not c.connected
        with pytest.raises(NotConnected):
            c.call("session.ping")
        fake_backlot.start(backlot_api.port)
        _until(c, lambda m: isinstance(m, rpc.StateChanged) and m.state == rpc.CONNECTED)
        job = c.call("jobs.submit", {"task": "text_to_image", "prompt": "again"})
        _until(c, lambda m: isinstance(m, rpc.Notification) and m.params["job"]["id"] == job["id"]
               and m.params["job"]["state"] == "succeeded")
    finally:
        c.close()


def test_pending_call_fails_when_connection_drops(backlot_api: Endpoint, fake_backlot: FakeBacklot) -> None:
    c = ApiClient(backlot_api.host, backlot_api.port, token=backlot_api.token, reconnect=False).connect()
    fake_backlot.hold()
    try:
        job = c.call("jobs.submit", {"task": "text_to_image", "prompt": "x"})
        req = c.call_async("jobs.get", {"job": job["id"]}, tag="late")
        fake_backlot.close_listener()
        seen = _until(c, lambda m: isinstance(m, rpc.StateChanged) and m.state == rpc.DISCONNECTED)
        replies = [m for m in seen if isinstance(m, rpc.Reply) and m.id == req]
        # the reply either made it before the drop or failed as NotConnected; it is never lost
        assert replies and (replies[0].error is None or isinstance(replies[0].error, NotConnected))
    finally:
        fake_backlot.release()
        c.close()


def _silent_server() -> tuple[socket.socket, threading.Thread]:
    """A server that answers the hello and then ignores everything."""
    srv = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = srv.accept()
        with conn, conn.makefile("rb") as f:
            f.readline()
            conn.sendall(b'{"jsonrpc":"2.0","id":1,"result":{}}\n')
            while f.readline():
                pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return srv, t


def test_call_times_out() -> None:
    srv, t = _silent_server()
    with srv, ApiClient("127.0.0.1", srv.getsockname()[1], token="t").connect() as c:
        with pytest.raises(CallTimeout) as info:
            c.call("session.ping", timeout=0.3)
        assert info.value.code == rpc.TIMED_OUT
        req = c.call_async("session.ping", timeout=0.3, tag="async")
        reply = _until(c, lambda m: isinstance(m, rpc.Reply))[-1]
        assert reply.id == req and isinstance(reply.error, CallTimeout)
    t.join(5)


def test_concurrent_calls_are_correlated(backlot_api: Endpoint) -> None:
    errors: list[str] = []
    with ApiClient(backlot_api.host, backlot_api.port, token=backlot_api.token).connect() as c:
        jobs = [c.call("jobs.submit", {"task": "text_to_image", "prompt": f"p{i}"})["id"] for i in range(8)]

        def worker(job: str) -> None:
            for _ in range(25):
                got = c.call("jobs.get", {"job": job})
                if got["id"] != job:
                    errors.append(f"{job} got {got['id']}")

        threads = [threading.Thread(target=worker, args=(j,)) for j in jobs]
        for th in threads:
            th.start()
        for th in threads:
            th.join(30)
    assert errors == []


def test_drain_never_waits() -> None:
    c = ApiClient("127.0.0.1", 1, token="t")
    t0 = time.perf_counter()
    assert c.drain() == []
    assert time.perf_counter() - t0 < 0.01
    c.close()


def test_backoff_doubles_to_cap_with_jitter() -> None:
    values = iter([0.0, 1.0, 0.5, 0.5, 0.5, 0.5])
    b = Backoff(1.0, 4.0, rand=lambda: next(values))
    assert [round(b.next(), 3) for _ in range(5)] == [0.8, 2.4, 4.0, 4.0, 4.0]
    b.reset()
    assert b.next() == 1.0
