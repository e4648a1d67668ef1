"""JobStore schema and queries; VRAM admission from estimates and from learned peaks."""
from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from backlot.services.config import load_settings
from backlot.services.control import ControlCenter
from backlot.services.events import HealthSampled, JobUpdated
from backlot.services.jobs.store import MIGRATIONS, JobStore
from backlot.services.jobs.vram import GIB, VramEstimator, size_bucket
from backlot.services.models import Job, JobState
from tests.helpers import EventWaiter


async def test_old_schema_is_migrated_and_keeps_its_jobs(tmp_path: Path) -> None:
    db = tmp_path / "jobs.sqlite3"
    with sqlite3.connect(db) as con:  # a database written by the first schema version
        con.executescript(MIGRATIONS[0] + "; PRAGMA user_version=1;")
        con.execute("INSERT INTO jobs VALUES ('old1', 1, 'text_to_image', 'p', '{}', '[]', 'auto', NULL, '{}', "
                    "'succeeded', '{}', '[]', NULL, '[]', NULL, 'cli', 0, 1.0, NULL, 2.0, 2.0)")
    store = JobStore(db)
    await store.open()
    try:
        assert store.schema_version == len(MIGRATIONS)
        old = await store.get("old1")
        assert old is not None and old.state is JobState.SUCCEEDED and old.client == "cli"
        await store.record_sample("comfyui@x:1", "text_to_image", 0, 5 * GIB, 3.0)
        assert await store.samples("comfyui@x:1", "text_to_image", 0) == [(5 * GIB, 3.0)]
    finally:
        await store.close()


async def test_queries_filter_by_state_task_backend_and_time(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite3")
    await store.open()
    try:
        for i, (task, state, backend) in enumerate([("text_to_image", JobState.SUCCEEDED, "comfyui@a:1"),
                                                    ("text", JobState.FAILED, "llm@b:2"),
                                                    ("text_to_image", JobState.QUEUED, None)]):
            job = Job(id=f"j{i}", task=task, prompt="p", state=state, routed_to=backend, created_at=1000.0 + i)
            await store.insert(job)
            assert job.seq == i + 1
        assert [j.id for j in await store.query()] == ["j2", "j1", "j0"]
        assert [j.id for j in await store.query(task="text_to_image")] == ["j2", "j0"]
        assert [j.id for j in await store.query(state="failed")] == ["j1"]
        assert [j.id for j in await store.query(backend="comfyui@a:1")] == ["j0"]
        assert [j.id for j in await store.query(since=1001.0)] == ["j2", "j1"]
        job = await store.get("2")
        assert job is not None and job.id == "j1"
        job.status = replace(job.status, message="changed")
        await store.update(job)
        assert (await store.get("j1")).status.message == "changed"  # type: ignore[union-attr]
    finally:
        await store.close()


# A finished job's wire form as Backlot wrote it while the job's parts were dicts (the CLI and the addon read it).
LEGACY = {
    "id": "0123456789ab", "seq": 7, "task": "text_to_image", "prompt": "a harbour", "params": {"steps": 4},
    "inputs": ["/data/outputs/0123456789ab/inputs/a.png"], "requested_backend": "auto",
    "routed_to": "comfyui@127.0.0.1:8189",
    "route": {"task": "text_to_image", "chosen": "comfyui@127.0.0.1:8189", "reason": "queue 0, 4 ms",
              "explanation": "comfyui@127.0.0.1:8189: queue 0, 4 ms; skipped comfyui@127.0.0.1:8188: down",
              "skipped": [{"service": "comfyui@127.0.0.1:8188", "why": "down"}], "fallback": False,
              "waiting_for_vram": False, "waiting_for_start": False, "note": "re-routed from comfyui@127.0.0.1:8188: down"},
    "state": "failed",
    "status": {"code": "failed", "fraction": 0.5, "step": 2, "total": 4, "unit": "steps", "message": "it broke",
               "queue_rank": None, "eta": 3.5, "preview": "/data/outputs/0123456789ab/preview.jpg"},
    "attempts": 2,
    "attempt_log": [{"n": 1, "backend": "comfyui@127.0.0.1:8188", "started_at": 10.0, "outcome": "failed: timeout",
                     "message": "no progress", "finished_at": 11.0},
                    {"n": 2, "backend": "comfyui@127.0.0.1:8189", "started_at": 12.0, "outcome": None, "message": ""}],
    "error": {"code": "runtime", "message": "it broke", "detail": {"node": "5"}},
    "outputs": [{"path": "/data/outputs/0123456789ab/out/a.png", "mime": "image/png", "bytes": 12}],
    "remote_ref": "p-1", "client": "blender", "cancel_requested": False, "created_at": 9.0, "started_at": 10.5,
    "finished_at": 13.0, "updated_at": 13.0}


def test_the_typed_job_keeps_the_wire_form() -> None:
    """Job.to_dict() gives clients the very JSON they read before the job's parts became models."""
    job = Job.from_dict(LEGACY)
    assert job.route is not None and job.route.skipped == (("comfyui@127.0.0.1:8188", "down"),)
    assert job.status.preview is not None and job.attempts[0].outcome == "failed: timeout"
    assert job.error is not None and job.error.code == "runtime" and job.outputs[0].path.name == "a.png"
    assert json.dumps(job.to_dict()) == json.dumps(LEGACY)  # same keys, same order, same values
    fresh = Job(id="x", task="text", prompt="p").to_dict()
    assert fresh["route"] == {} and fresh["error"] is None and fresh["attempt_log"] == [] and fresh["status"] == {
        "code": "queued", "fraction": None, "step": None, "total": None, "unit": "", "message": "",
        "queue_rank": None, "eta": None}


async def test_rows_stored_before_read_back_and_are_written_in_the_same_shape(tmp_path: Path) -> None:
    """A row holding the old JSON dicts reads into the typed job and is written back byte for byte."""
    path = tmp_path / "jobs.sqlite3"
    store = JobStore(path)
    await store.open()
    await store.close()
    row = {k: v for k, v in LEGACY.items() if k != "attempt_log"} | {"attempts": LEGACY["attempt_log"]}
    json_cols = ("params", "inputs", "route", "status", "attempts", "error", "outputs")
    values = {k: json.dumps(v) if k in json_cols else v for k, v in row.items()}
    with sqlite3.connect(path) as db:
        db.execute(f"INSERT INTO jobs ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})",
                   tuple(values.values()))
    store = JobStore(path)
    await store.open()
    try:
        job = await store.get("7")
        assert job is not None and job.to_dict() == LEGACY
        await store.update(job)
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        db.row_factory = sqlite3.Row
        written = dict(db.execute("SELECT * FROM jobs WHERE id = ?", (LEGACY["id"],)).fetchone())
    assert {c: written[c] for c in json_cols} == {c: values[c] for c in json_cols}


async def test_estimates_come_from_config_until_enough_jobs_are_learned(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite3")
    await store.open()
    try:
        est = VramEstimator(load_settings(cli={"vram_learn_min_samples": 3}), store)
        params = {"width": 1024, "height": 1024}
        assert est.estimate("c@x:1", "text_to_image", params) == (6 * GIB, "configured estimate")
        for peak in (4 * GIB, 5 * GIB):
            await est.learn("c@x:1", "text_to_image", params, peak, 2.0)
        assert est.estimate("c@x:1", "text_to_image", params)[1] == "configured estimate"
        await est.learn("c@x:1", "text_to_image", params, 3 * GIB, 2.0)
        need, source = est.estimate("c@x:1", "text_to_image", params)
        assert need == int(5 * GIB * 1.1) and source == "learned from 3 jobs"
        assert est.estimate("c@x:1", "text_to_image", {"width": 4096, "height": 4096})[1] == "configured estimate"
        fresh = VramEstimator(load_settings(cli={"vram_learn_min_samples": 3}), store)
        await fresh.load("c@x:1", "text_to_image", params)
        assert fresh.estimate("c@x:1", "text_to_image", params) == (need, source)
    finally:
        await store.close()
    assert size_bucket({"width": 512, "height": 512}) != size_bucket({"width": 832, "height": 480, "frames": 81})


async def test_job_waits_for_vram_then_starts_when_it_frees(standin: Any, backlot_home: Path) -> None:
    small = standin("comfyui", "--gpu-name", "NVIDIA RTX 3060", "--vram-total", "12", "--vram-free", "3")
    settings = load_settings(cli={"urls": [small.url], "scan_default_ports": False, "health_interval": 0.2,
                                  "reconnect_backoff_base": 0.05, "reconnect_backoff_max": 0.2,
                                  "discovery_budget": 1.0})
    center = ControlCenter(settings)
    sampled = EventWaiter(center.bus, HealthSampled)
    await center.start()
    waiter = EventWaiter(center.bus, JobUpdated)
    try:
        sid = f"comfyui@127.0.0.1:{small.port}"
        await sampled.wait(lambda e: e.sample.service_id == sid and bool(e.sample.vram))
        job = await center.jobs.submit("text_to_image", "x", {"workflow": "standin_image", "width": 32, "height": 32})
        waiting = await waiter.wait(lambda e: e.job.id == job.id and e.job.route is not None and "VRAM" in e.job.route.explain()
                                    and e.job.state is JobState.QUEUED)
        assert "VRAM 3.0 GiB free < 6.0 GiB needed" in waiting.job.route.explain()
        assert waiting.job.status.message == "waiting for VRAM to free up"
        small.stop()  # the other app on the GPU exits: restart with the memory free
        standin("comfyui", "--gpu-name", "NVIDIA RTX 3060", "--vram-total", "12", "--vram-free", "11",
                port=small.port)
        done = await center.jobs.wait(job.id, 60)
        assert done.state is JobState.SUCCEEDED, done.status
    finally:
        waiter.close()
        sampled.close()
        await center.stop()


async def test_peak_vram_during_jobs_is_learned_and_survives_a_restart(standin: Any) -> None:
    """The runner reads VRAM while its job runs (no luck with the health interval needed); a restart keeps it."""
    sp = standin("comfyui", "--gpu-name", "NVIDIA RTX 4090", "--vram-total", "24", "--vram-free", "20",
                 "--job-vram", "5")
    # Health checks every 60 s: only the runner's own readings can see the job's VRAM.
    settings = load_settings(cli={"urls": [sp.url], "scan_default_ports": False, "health_interval": 60,
                                  "discovery_budget": 1.0, "vram_learn_min_samples": 2})
    sid = f"comfyui@127.0.0.1:{sp.port}"
    center = ControlCenter(settings)
    await center.start()
    try:
        for i in range(2):
            job = await center.jobs.submit("text_to_image", f"shot {i}", {"workflow": "standin_progress", "seconds": 1.0})
            assert (await center.jobs.wait(job.id, 30)).state is JobState.SUCCEEDED
        need, source = center.estimator.estimate(sid, "text_to_image", {"workflow": "standin_progress"})
    finally:
        await center.stop()
    assert source == "learned from 2 jobs"
    assert 5 * GIB <= need <= 6 * GIB  # the stand-in holds 5 GiB while a prompt runs; +10% margin
    again = ControlCenter(settings, discover_on_start=False)
    await again.start()
    try:
        assert again.estimator.estimate(sid, "text_to_image", {"workflow": "standin_progress"}) == (need, source)
    finally:
        await again.stop()


async def test_two_processes_on_one_home_never_share_a_job_number(tmp_path: Path) -> None:
    a, b = JobStore(tmp_path / "jobs.sqlite3"), JobStore(tmp_path / "jobs.sqlite3")
    await a.open()
    await b.open()
    try:
        jobs = [Job(id=f"j{i}", task="text", prompt="p") for i in range(20)]
        await asyncio.gather(*((a if i % 2 else b).insert(j) for i, j in enumerate(jobs)))
    finally:
        await a.close()
        await b.close()
    assert sorted(j.seq for j in jobs) == list(range(1, 21))
