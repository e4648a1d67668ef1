"""Discovery against real stand-in processes: kinds, protocols, ports, budget, moves and vanishings."""
from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from backlot.services.config import load_settings
from backlot.services.connectivity.discovery import Discovery, candidates, scan
from main import main
from backlot.services.events import DiscoveryFinished, EventBus, ServiceDiscovered, ServiceUpdated
from backlot.services.models import FoundBy, ServiceKind
from backlot.standins import launcher
from tests.helpers import BlackHoles, EventWaiter, serve

EXPECTED = {  # stand-in kind -> (record kind, protocol, usable)
    "comfyui": (ServiceKind("comfyui"), "comfyui", True),
    "wan2gp": (ServiceKind("wan2gp"), "mcp", True),
    "wan2gp-webui": (ServiceKind("wan2gp"), "gradio-6", False),
    "rvc": (ServiceKind("rvc"), "gradio-3", True),
    "audioldm": (ServiceKind("audioldm"), "gradio-3", True),
    "llm": (ServiceKind("llm"), "openai", True),
}


@pytest.fixture(scope="module")
def every_standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, launcher.StandinProcess]]:
    procs = launcher.start_many(launcher.KINDS, data_root=tmp_path_factory.mktemp("standins"), speed=4)
    yield procs
    launcher.stop_all(procs)


async def test_finds_every_kind_on_custom_ports_and_tells_gradio_3_from_5(
        every_standin: dict[str, launcher.StandinProcess]) -> None:
    ports = {"comfyui": [every_standin["comfyui"].port], "wan2gp": [every_standin["wan2gp"].port,
             every_standin["wan2gp-webui"].port], "rvc": [every_standin["rvc"].port],
             "audioldm": [every_standin["audioldm"].port], "llm": [every_standin["llm"].port]}
    disc = Discovery(load_settings(cli={"ports": ports}), EventBus())
    result = await disc.run()
    by_port = {r.port: r for r in result.records}
    missing = {k: sp.port for k, sp in every_standin.items() if sp.port not in by_port}
    assert not missing, (missing, result.timed_out, result.duration_ms)
    for kind, sp in every_standin.items():
        rec = by_port[sp.port]
        assert (rec.kind, rec.protocol, rec.usable) == EXPECTED[kind], (kind, rec)
        assert rec.found_by is FoundBy.CUSTOM_PORT
    webui = by_port[every_standin["wan2gp-webui"].port]
    assert "--mcp" in webui.hint and webui.capabilities == ()
    assert by_port[every_standin["comfyui"].port].version == "0.8.0"
    assert by_port[every_standin["rvc"].port].version.startswith("3.")
    assert "text_to_image" in by_port[every_standin["comfyui"].port].capabilities
    assert result.duration_ms < 2000


async def test_explicit_urls_are_always_probed(every_standin: dict[str, launcher.StandinProcess]) -> None:
    url = every_standin["llm"].url
    disc = Discovery(load_settings(cli={"urls": [url]}), EventBus())
    found = {r.base_url: r for r in (await disc.run()).records}
    assert found[url].found_by is FoundBy.CONFIGURED_URL and found[url].kind == ServiceKind("llm")


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


async def test_finds_comfyui_on_its_default_port(standin: Any) -> None:
    if not _port_free(8188):
        pytest.skip("port 8188 is taken on this machine")
    sp = standin("comfyui", port=8188)
    result = await Discovery(load_settings(), EventBus()).run()
    rec = next(r for r in result.records if r.port == 8188)
    assert rec.kind == ServiceKind("comfyui") and rec.found_by is FoundBy.DEFAULT_PORT and sp.alive()


async def test_black_holes_cannot_push_discovery_past_its_budget(every_standin: dict[str, launcher.StandinProcess]) -> None:
    holes = BlackHoles(8)
    try:
        settings = load_settings(cli={"urls": [f"http://127.0.0.1:{p}" for p in holes.ports + holes.closed_ports]
                                      + [every_standin["comfyui"].url]})
        cands = candidates(settings)
        result = await scan(cands, budget=0.6, connect_timeout=0.2)
    finally:
        holes.close()
    assert result.duration_ms < 600 + 500, result.duration_ms  # the budget, plus scheduling slack on a busy CI box
    assert any(r.kind == ServiceKind("comfyui") for r in result.records)
    assert sorted(int(u.rsplit(":", 1)[1]) for u in result.timed_out) == sorted(holes.ports)


async def test_moved_service_keeps_identity_and_vanished_one_is_marked_down(standin: Any, tmp_path: Path) -> None:
    first = standin("comfyui")
    bus = EventBus()
    events = EventWaiter(bus, ServiceDiscovered, ServiceUpdated)
    disc = Discovery(load_settings(cli={"urls": [first.url], "discovery_budget": 1.0}), bus)
    await disc.run()
    old_id = f"comfyui@127.0.0.1:{first.port}"
    born = disc.services[old_id].first_seen
    first.kill()
    second = standin("comfyui")
    disc.settings = load_settings(cli={"urls": [second.url], "discovery_budget": 1.0})
    await disc.run()
    new_id = f"comfyui@127.0.0.1:{second.port}"
    assert old_id not in disc.services and disc.services[new_id].first_seen == born
    moved = [e for e in events.events if isinstance(e, ServiceUpdated)]
    assert moved and moved[-1].changes == (f"moved from port {first.port}",)
    assert disc.services[new_id].details["previous_id"] == old_id
    second.kill()
    await disc.run()
    assert disc.services[new_id].present is False
    assert isinstance(events.events[-1], ServiceUpdated) and events.events[-1].changes == ("vanished",)
    events.close()


async def test_explicit_urls_that_found_nothing_are_reported_with_the_reason() -> None:
    async def not_found(_: web.Request) -> web.Response:
        return web.Response(status=404, text="nothing here")

    holes = BlackHoles(1)
    bus = EventBus()
    finished = EventWaiter(bus, DiscoveryFinished)
    bad = ["http://127.0.0.1:notaport", "ftp://127.0.0.1:21", "http://:8188", "http://127.0.0.1:99999"]
    try:
        async with serve({"/{tail:.*}": not_found}) as other:
            refused = f"http://127.0.0.1:{holes.closed_ports[0]}"
            silent = f"localhost:{holes.ports[0]}"
            settings = load_settings(cli={"urls": [refused, *bad], "scan_default_ports": False})
            result = await Discovery(settings, bus).run(urls=[silent, other], budget=1.0)
    finally:
        holes.close()
    why = dict(result.unanswered)
    assert set(why) == {refused, silent, other, *bad} and not result.records
    assert why[refused] == "connection refused (is it running?)"
    assert why[silent] == "no answer within the 1 s discovery budget"  # reported as the user wrote it
    assert why[other] == "something answered, but not a service Backlot knows"
    assert why["http://127.0.0.1:notaport"].startswith("malformed URL: port could not be cast")
    assert why["ftp://127.0.0.1:21"] == "malformed URL: the scheme must be http or https, not ftp"
    assert why["http://:8188"] == "malformed URL: no host"
    assert why["http://127.0.0.1:99999"] == "malformed URL: port out of range 0-65535"
    event = await finished.wait(lambda e: True, 5)
    assert dict(event.unanswered) == why and event.to_dict()["unanswered"][0] == list(result.unanswered[0])


def test_discover_prints_unanswered_urls_and_refuses_a_bad_budget(capsys: pytest.CaptureFixture[str]) -> None:
    holes = BlackHoles(1)
    holes.close()
    closed = holes.closed_ports[0]
    url = f"http://127.0.0.1:{closed}"
    assert main(["discover", "--url", url, "--url", "http://h:x", "--budget", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {(u["url"], u["reason"]) for u in report["unanswered"]} >= {
        (url, "connection refused (is it running?)"), ("http://h:x", "malformed URL: port could not be cast to integer value as 'x'")}
    assert main(["discover", "--url", url, "--budget", "1"]) == 0
    assert f"Nothing found at {url}: connection refused (is it running?)" in capsys.readouterr().out
    for budget in ("0", "-1", "nan"):
        assert main(["discover", "--budget", budget]) == 2
        assert capsys.readouterr().err.strip() == "backlot: --budget must be greater than 0"
