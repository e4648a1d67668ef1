"""The event bus for two faces: wire form of every event, frozen payloads, bounded streams."""
from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backlot.services.launch.console import ConsoleLine
from backlot.services.launch.view import ExitInfo, LaunchView
from backlot.services.events import (
    EVENT_TYPES,
    Event,
    EventBus,
    JobUpdated,
    LogRecorded,
    MetricsSampled,
    ServiceDiscovered,
    ServiceUpdated,
    types_for_topic,
)
from backlot.services.models import (
    Attempt,
    BreakerSnapshot,
    FoundBy,
    GpuProcess,
    GpuSample,
    HealthSample,
    Job,
    JobFailure,
    JobState,
    OutputFile,
    RouteDecision,
    ServiceKind,
    ServiceRecord,
    ServiceState,
    VramReading,
)

text = st.text(max_size=20)
finite = st.floats(allow_nan=False, allow_infinity=False)
json_value = st.recursive(st.none() | st.booleans() | st.integers() | finite | text,
                          lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
                          max_leaves=8)
records = st.builds(ServiceRecord, kind=st.sampled_from(["comfyui", "wan2gp", "llm"]).map(ServiceKind), host=text,
                    port=st.integers(1, 65535), base_url=text, protocol=text, version=text, title=text,
                    found_by=st.sampled_from(FoundBy), usable=st.booleans(), hint=text,
                    capabilities=st.lists(text, max_size=3).map(tuple),
                    details=st.dictionaries(text, json_value, max_size=3), first_seen=finite, last_seen=finite,
                    present=st.booleans())
samples = st.builds(HealthSample, service_id=text, at=finite, ok=st.booleans(), latency_ms=st.none() | finite,
                    error_class=st.none() | text, message=text, queue_depth=st.none() | st.integers(0, 99),
                    vram=st.lists(st.builds(VramReading, device=text, total=st.integers(0), free=st.integers(0),
                                            source=text), max_size=2).map(tuple))
snapshots = st.builds(BreakerSnapshot, state=st.sampled_from(["closed", "open", "half_open"]),
                      failures=st.integers(0, 9), reason=text, opened_at=st.none() | finite,
                      retry_at=st.none() | finite, failures_by_class=st.dictionaries(text, st.integers(0, 9)),
                      retry_in=st.none() | finite)
gpus = st.builds(GpuSample, index=st.integers(0, 7), name=text, total=st.integers(0), used=st.integers(0),
                 utilization=st.none() | st.integers(0, 100), at=finite,
                 processes=st.lists(st.builds(GpuProcess, pid=st.integers(1), used_bytes=st.none() | st.integers(0),
                                              name=text, service_id=st.none() | text), max_size=2).map(tuple))
jobs = st.builds(Job, id=text, task=text, prompt=text, params=st.dictionaries(text, json_value, max_size=3),
                 inputs=st.lists(text, max_size=2), routed_to=st.none() | text, state=st.sampled_from(JobState),
                 route=st.none() | st.builds(RouteDecision, task=text, chosen=st.none() | text, reason=text,
                                             skipped=st.lists(st.tuples(text, text), max_size=2).map(tuple),
                                             note=text),
                 attempts=st.lists(st.builds(Attempt, n=st.integers(1, 9), backend=text, started_at=finite,
                                             outcome=st.none() | text, message=text,
                                             finished_at=st.none() | finite), max_size=2).map(tuple),
                 error=st.none() | st.builds(JobFailure, code=text, message=text,
                                             detail=st.dictionaries(text, json_value, max_size=2)),
                 outputs=st.lists(st.builds(OutputFile, path=text.map(Path), mime=text, bytes=st.integers(0)),
                                  max_size=2).map(tuple))
ids = st.lists(text, max_size=3).map(tuple)
states = st.sampled_from(ServiceState)

STRATEGIES: dict[str, st.SearchStrategy[Any]] = {
    "ServiceDiscovered": st.builds(ServiceDiscovered, records),
    "ServiceUpdated": st.builds(ServiceUpdated, records, ids),
    "ServiceForgotten": st.builds(types_for_topic("service.forgotten")[0], text),
    "DiscoveryFinished": st.builds(types_for_topic("discovery.finished")[0], ids, finite, st.integers(0),
                                   st.lists(st.tuples(text, text), max_size=2).map(tuple)),
    "HealthChanged": st.builds(types_for_topic("health.changed")[0], text, states, states, samples, text),
    "HealthSampled": st.builds(types_for_topic("health.sampled")[0], samples, states),
    "BreakerChanged": st.builds(types_for_topic("breaker.changed")[0], text, snapshots),
    "GpuSampled": st.builds(types_for_topic("gpu.sampled")[0], st.lists(gpus, max_size=2).map(tuple)),
    "MetricsSampled": st.builds(MetricsSampled, text, finite, finite),
    "JobUpdated": st.builds(JobUpdated, jobs),
    "JobPreviewed": st.builds(types_for_topic("job.previewed")[0], text, text, st.sampled_from(["image/jpeg", "image/png"]),
                              st.integers(1), st.none() | st.integers(1, 4096), st.none() | st.integers(1, 4096)),
    "LogRecorded": st.builds(LogRecorded, st.sampled_from(["INFO", "ERROR"]), text, text, finite, st.none() | text),
    "BlenderPlace": st.builds(types_for_topic("blender.place")[0], text, st.integers(1), text,
                              st.sampled_from(["image/png", "video/mp4", "audio/wav"]), text, text),
    "LaunchUpdated": st.builds(
        types_for_topic("launch.updated")[0],
        st.builds(LaunchView, text, st.sampled_from(["comfyui", "wan2gp"]),
                  st.sampled_from(["stopped", "starting", "running", "restarting", "failed", "blocked"]), text,
                  st.none() | st.integers(1, 1 << 22), text, st.integers(1, 65535), text, text, st.integers(0),
                  st.none() | st.builds(ExitInfo, st.none() | st.integers(-64, 255), finite, st.booleans()),
                  st.sampled_from(["with-backlot", "on-demand"]), st.sampled_from(["on-crash", "never"]),
                  st.booleans(), st.booleans(), st.booleans(), text, text, st.lists(text, max_size=3).map(tuple))),
    "LaunchOutput": st.builds(types_for_topic("launch.console")[0], text,
                              st.lists(st.builds(ConsoleLine, st.integers(1), text), max_size=3).map(tuple)),
}


def _all_subclasses(cls: type[Event]) -> set[type[Event]]:
    return {c for sub in cls.__subclasses__() for c in {sub, *_all_subclasses(sub)}}


def test_every_event_class_is_listed_with_a_topic_and_a_strategy() -> None:
    assert _all_subclasses(Event) == set(EVENT_TYPES)
    assert {t.__name__ for t in EVENT_TYPES} == set(STRATEGIES)
    assert {t.topic for t in EVENT_TYPES} >= {"job.updated", "service.updated", "service.forgotten",
                                              "health.sampled", "health.changed", "breaker.changed", "gpu.sampled",
                                              "metrics.sampled", "discovery.finished", "log.record"}
    assert set(types_for_topic("service.updated")) == {ServiceDiscovered, ServiceUpdated}
    assert types_for_topic("no.such") == ()


@pytest.mark.parametrize("name", sorted(STRATEGIES))
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_every_event_is_frozen_and_its_wire_form_is_strict_json(name: str, data: st.DataObject) -> None:
    event = data.draw(STRATEGIES[name])
    assert type(event).__name__ == name
    wire = event.to_dict()
    assert json.loads(json.dumps(wire, allow_nan=False)) == wire  # plain JSON types only, nothing lost on the way
    field = dataclasses.fields(event)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(event, field, None)


def test_wire_forms_carry_the_payload() -> None:
    rec = ServiceRecord(ServiceKind("comfyui"), "127.0.0.1", 8188, "http://127.0.0.1:8188", "comfyui")
    assert ServiceDiscovered(rec).to_dict() == {"service": rec.to_dict(), "changes": ["discovered"]}
    assert ServiceUpdated(rec, ("vanished",)).to_dict()["changes"] == ["vanished"]
    job = Job("j1", "text", "hi", state=JobState.RUNNING)
    assert JobUpdated(job).to_dict() == {"job": job.to_dict()} and JobUpdated(job).to_dict()["job"]["state"] == "running"
    sample = HealthSample("a", 1.0, True, 3.0, vram=(VramReading("cuda:0", 10, 4, "comfyui"),))
    sampled = types_for_topic("health.sampled")[0](sample, ServiceState.UP).to_dict()  # type: ignore[call-arg]
    assert sampled == {"sample": {"service_id": "a", "at": 1.0, "ok": True, "latency_ms": 3.0, "error_class": None,
                                  "message": "", "queue_depth": None,
                                  "vram": [{"device": "cuda:0", "total": 10, "free": 4, "source": "comfyui"}]},
                       "state": "up"}


def test_service_records_are_frozen() -> None:
    rec = ServiceRecord(ServiceKind("comfyui"), "h", 1, "http://h:1", "comfyui")
    with pytest.raises(dataclasses.FrozenInstanceError):
        rec.present = False  # type: ignore[misc]
    assert dataclasses.replace(rec, present=False).present is False and rec.present
    assert hash(rec) == hash(dataclasses.replace(rec, details={"x": 1}))  # a dict inside does not break hashing


def test_subscribe_is_typed_and_returns_unsubscribe() -> None:
    bus = EventBus()
    seen: list[str] = []

    def on_service(event: ServiceDiscovered | ServiceUpdated) -> None:
        seen.append(event.record.id)

    unsub = bus.subscribe(on_service, ServiceDiscovered, ServiceUpdated)
    rec = ServiceRecord(ServiceKind("comfyui"), "h", 1, "http://h:1", "comfyui")
    bus.publish(ServiceDiscovered(rec))
    bus.publish(MetricsSampled("x", 1.0, 1.0))
    bus.publish(ServiceUpdated(rec, ("back",)))
    assert seen == [rec.id, rec.id]
    unsub()
    assert bus.subscriber_count == 0


async def test_a_slow_stream_drops_the_oldest_counts_them_and_stays_bounded() -> None:
    bus = EventBus()
    stream = bus.stream(MetricsSampled, maxsize=10)
    for i in range(1000):
        bus.publish(MetricsSampled("x", float(i), 0.0))
        assert len(stream) <= 10  # memory stays bounded however far the consumer falls behind
    bus.publish(LogRecorded("INFO", "x", "not for this stream", 0.0))
    assert stream.dropped == 990 and len(stream) == 10
    got = [(await stream.__anext__()).at for _ in range(10)]
    assert got == [float(i) for i in range(990, 1000)]  # the newest survive
    stream.close()


async def test_a_stream_wakes_its_consumer_and_close_unsubscribes() -> None:
    bus = EventBus()
    before = bus.subscriber_count
    received: list[float] = []
    async with bus.stream(MetricsSampled, maxsize=4) as stream:
        assert bus.subscriber_count == before + 1
        bus.publish(MetricsSampled("x", 1.0, 0.0))
        async for event in stream:
            received.append(event.at)
            if len(received) == 1:
                bus.publish(MetricsSampled("x", 2.0, 0.0))
            else:
                break
        assert stream.dropped == 0
    assert received == [1.0, 2.0] and bus.subscriber_count == before


async def test_closing_a_stream_ends_a_waiting_consumer() -> None:
    bus = EventBus()
    stream = bus.stream(maxsize=2)
    started = asyncio.Event()

    async def consume() -> list[Event]:
        started.set()
        return [e async for e in stream]

    task = asyncio.create_task(consume(), name="consume")
    await started.wait()  # the consumer is now parked waiting for an event
    stream.close()
    stream.close()  # twice is harmless
    assert await asyncio.wait_for(task, 5) == [] and bus.subscriber_count == 0
    with pytest.raises(ValueError):
        bus.stream(maxsize=0)
