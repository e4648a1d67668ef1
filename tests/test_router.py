"""Routing table cases: capability, pin, VRAM fit, open breaker, unhealthy fallback, round-robin, explanations."""
from __future__ import annotations

from typing import Any

from backlot.services.backends import registry
from backlot.services.config import load_settings
from backlot.services.jobs.router import GIB, Router, ServiceHealth
from backlot.services.models import ServiceKind, ServiceRecord, ServiceState


def rec(kind: str, port: int, host: str = "127.0.0.1", **kw: Any) -> ServiceRecord:
    k = ServiceKind(kind)
    return ServiceRecord(k, host, port, f"http://{host}:{port}", kw.pop("protocol", kind), capabilities=registry.capabilities(k), **kw)


class World:
    def __init__(self, *records: ServiceRecord) -> None:
        self.records = list(records)
        self.health: dict[str, ServiceHealth] = {}
        self.load: dict[str, int] = {}
        self.need: dict[str, int | None] = {}

    def router(self, **settings: Any) -> Router:
        return Router(load_settings(cli=settings), lambda: self.records, self.health.get,
                      lambda sid: self.load.get(sid, 0),
                      lambda sid, task, params: (self.need.get(task, 6 * GIB), "configured estimate"))


def up(latency: float = 10, queue: int = 0, free: float | None = 20, **kw: Any) -> ServiceHealth:
    return ServiceHealth(ServiceState.UP, latency, queue, int(free * GIB) if free is not None else None, **kw)


def test_task_goes_to_the_first_choice_kind_and_says_why() -> None:
    w = World(rec("comfyui", 8188), rec("wan2gp", 8000, protocol="mcp"))
    w.health = {"comfyui@127.0.0.1:8188": up(41, free=18.2), "wan2gp@127.0.0.1:8000": up(12, free=None)}
    d = w.router().route("text_to_video")
    assert d.chosen == "wan2gp@127.0.0.1:8000" and d.reason == "queue 0, 12 ms"
    d = w.router().route("text_to_video", {"complexity": "high"})
    assert d.chosen == "comfyui@127.0.0.1:8188" and d.reason == "18.2 GiB free, queue 0, 41 ms"
    assert w.router().route("text_to_image").chosen == "comfyui@127.0.0.1:8188"


def test_vram_too_small_is_skipped_and_the_job_waits() -> None:
    w = World(rec("comfyui", 8188), rec("comfyui", 8189, host="gpu-box"))
    w.health = {"comfyui@127.0.0.1:8188": up(free=6.1), "comfyui@gpu-box:8189": up(latency=80, free=22)}
    w.need["text_to_video"] = 14 * GIB
    d = w.router().route("text_to_video")
    assert d.chosen == "comfyui@gpu-box:8189"
    assert d.skipped == (("comfyui@127.0.0.1:8188", "VRAM 6.1 GiB free < 14.0 GiB needed (configured estimate)"),)
    assert "skipped comfyui@127.0.0.1:8188: VRAM 6.1 GiB free < 14.0 GiB needed" in d.explain()
    w.health["comfyui@gpu-box:8189"] = up(free=3)
    d = w.router().route("text_to_video")
    assert d.chosen is None and d.waiting_for_vram and not d.no_capable_backend


def test_open_breaker_is_skipped_with_its_retry_time() -> None:
    w = World(rec("comfyui", 8188), rec("comfyui", 8189))
    w.health = {"comfyui@127.0.0.1:8188": up(breaker="open", retry_in=12.4), "comfyui@127.0.0.1:8189": up(latency=90)}
    d = w.router().route("text_to_image")
    assert d.chosen == "comfyui@127.0.0.1:8189"
    assert d.skipped == (("comfyui@127.0.0.1:8188", "circuit open, retry in 12 s"),)


def test_all_unhealthy_tries_the_least_bad() -> None:
    w = World(rec("comfyui", 8188), rec("comfyui", 8189))
    w.health = {"comfyui@127.0.0.1:8188": ServiceHealth(ServiceState.DOWN, reason="connection refused"),
                "comfyui@127.0.0.1:8189": up(breaker="open", retry_in=30)}
    d = w.router().route("text_to_image")
    assert d.fallback and d.chosen == "comfyui@127.0.0.1:8188"
    assert "least bad" in d.reason and d.skipped == (("comfyui@127.0.0.1:8189", "circuit open, retry in 30 s"),)


def test_round_robin_between_equal_comfyuis_and_queue_preference() -> None:
    w = World(rec("comfyui", 8188), rec("comfyui", 8189))
    w.health = {"comfyui@127.0.0.1:8188": up(10), "comfyui@127.0.0.1:8189": up(11)}
    r = w.router()
    picks = [r.route("text_to_image").chosen for _ in range(4)]
    assert picks[0] != picks[1] and picks[0] == picks[2] and set(picks) == set(w.health)
    w.load["comfyui@127.0.0.1:8188"] = 2  # Backlot's own jobs there count as queue
    assert {r.route("text_to_image").chosen for _ in range(3)} == {"comfyui@127.0.0.1:8189"}


def test_pin_is_honoured_and_bad_pins_explained() -> None:
    w = World(rec("comfyui", 8188), rec("comfyui", 8189))
    w.health = {"comfyui@127.0.0.1:8188": up(10), "comfyui@127.0.0.1:8189": up(500)}
    d = w.router().route("text_to_image", requested="comfyui@127.0.0.1:8189")
    assert d.chosen == "comfyui@127.0.0.1:8189" and d.reason.startswith("pinned; ")
    d = w.router().route("text_to_image", requested="rvc@127.0.0.1:7865")
    assert d.chosen is None and d.no_capable_backend and "not a known service" in d.reason


def test_no_capable_backend_and_unusable_services_are_named() -> None:
    webui = rec("wan2gp", 7860, protocol="gradio-5", usable=False, hint="start Wan2GP with --mcp")
    w = World(webui)
    d = w.router().route("text_to_video")
    assert d.chosen is None and d.no_capable_backend
    assert d.skipped == (("wan2gp@127.0.0.1:7860", "start Wan2GP with --mcp"),)
    assert World().router().route("voice_conversion").no_capable_backend


def test_excluded_backends_after_a_failure() -> None:
    w = World(rec("comfyui", 8188), rec("comfyui", 8189))
    w.health = {"comfyui@127.0.0.1:8188": up(10), "comfyui@127.0.0.1:8189": up(10)}
    d = w.router().route("text_to_image", exclude=["comfyui@127.0.0.1:8188"])
    assert d.chosen == "comfyui@127.0.0.1:8189" and ("comfyui@127.0.0.1:8188", "already failed this job") in d.skipped
    d = w.router().route("text_to_image", exclude=list(w.health))
    assert d.chosen is None and not d.no_capable_backend


def test_task_table_is_configurable() -> None:
    w = World(rec("comfyui", 8188), rec("wan2gp", 8000, protocol="mcp"))
    w.health = {sid: up() for sid in ("comfyui@127.0.0.1:8188", "wan2gp@127.0.0.1:8000")}
    r = w.router(task_backends={"text_to_video": ["comfyui", "wan2gp"]})
    assert r.route("text_to_video").chosen == "comfyui@127.0.0.1:8188"
