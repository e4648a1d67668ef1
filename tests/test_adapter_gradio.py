"""The Gradio adapters (RVC, AudioLDM) against real processes: the Gradio 3.50 stand-ins, a small Gradio 6 app
driven through gradio_client, and misbehaving servers."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import wave
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import av
import numpy as np
import pytest
from aiohttp import web

from backlot.services.backends.audioldm.adapter import AudioLdmBackend
from backlot.services.backends.base import Backend, FailureCode, JobRequest, JobStatus, StatusCode
from backlot.services.backends.gradio.app import GradioApp, GradioTimeouts
from backlot.services.backends.rvc.adapter import RvcBackend
from backlot.services.connectivity.pool import ConnectionPool
from backlot.services.models import ServiceKind, ServiceRecord
from backlot.standins import launcher
from backlot.standins.launcher import REPO_ROOT, StandinProcess
from tests.helpers import serve

pytestmark = pytest.mark.slow

TONE_HZ = 220.0
VOICES = ["aria-v2-40k.pth", "bruno-v2-48k.pth", "chorus-v1-40k.pth"]  # the stand-in's voices, sorted
FAST = GradioTimeouts(connect=2.0, config=5.0, call=60.0, upload=10.0, download=10.0, poll=0.02)

# A small AudioLDM2-shaped app on current Gradio: named text2audio, gr.Progress, a waveform MP4 out.
MODERN_APP = '''
import sys, tempfile, time
from pathlib import Path
import numpy as np
import gradio as gr
from backlot.standins._common import free_port
from backlot.standins.gradio3._waveform_video import write_waveform_mp4

def text2audio(text, duration, guidance_scale, random_seed, n_candidates, progress=gr.Progress()):
    if "fail" in text:
        raise gr.Error("the model ran out of GPU memory")
    step = 0.6 if "slow" in text else 0.05
    for _ in progress.tqdm(range(4), desc="sampling"):
        time.sleep(step)
    rate = 48000
    t = np.arange(int(rate * float(duration))) / rate
    path = Path(tempfile.mkdtemp()) / "waveform.mp4"
    write_waveform_mp4(path, (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), rate)
    return str(path)

with gr.Blocks(title="AudioLDM 2") as demo:
    text = gr.Textbox(label="Input text")
    duration = gr.Slider(5, 15, value=10, step=2.5, label="Duration (seconds)")
    guidance = gr.Slider(0, 7, value=3.5, step=0.5, label="Guidance scale (Large => better quality)")
    seed = gr.Number(value=45, label="Change this value (any integer number) will lead to a different result.")
    n = gr.Slider(1, 5, value=3, step=1, label="Automatic quality control: the number of candidates")
    out = gr.Video(label="Output")
    gr.Button("Submit").click(text2audio, [text, duration, guidance, seed, n], [out], api_name="text2audio")
demo.queue(default_concurrency_limit=1)
for attempt in range(5):  # a free port, not Gradio's 7860+: discovery scans those
    try:
        demo.launch(server_name="127.0.0.1", server_port=free_port("127.0.0.1"), prevent_thread_lock=True,
                    quiet=True)
        break
    except OSError:
        if attempt == 4:
            raise
print("READY " + demo.local_url, flush=True)
demo.block_thread()
'''


class ModernApp:
    """The Gradio 6 app above as a subprocess; ``url`` once it printed READY."""

    def __init__(self, script: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "GRADIO_ANALYTICS_ENABLED": "False",
               "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, env=env, cwd=str(REPO_ROOT))
        self.url = ""
        self.lines: list[str] = []
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("READY ") and not self.url:
                self.url = line.split()[1].rstrip("/")
                self._ready.set()
            self.lines.append(line)
        self._ready.set()

    def wait_ready(self, timeout: float) -> None:
        """Block until it listens, or fail with its output."""
        if not self._ready.wait(timeout) or not self.url:
            self.stop()
            raise RuntimeError("the Gradio 6 test app did not start:\n" + "".join(self.lines[-20:]))

    def stop(self) -> None:
        """Terminate it and close its pipe."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(2)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """RVC (old and new layout), AudioLDM and the Gradio 6 app, started in parallel once for the module."""
    root = tmp_path_factory.mktemp("gradio-adapters")
    script = root / "modern_app.py"
    script.write_text(MODERN_APP)
    procs: dict[str, StandinProcess] = {}
    modern: ModernApp | None = None
    try:
        procs["rvc"] = launcher.spawn("rvc", 0, speed=20.0, data=root / "rvc")
        procs["rvc-new"] = launcher.spawn("rvc", 0, speed=20.0, data=root / "rvc-new", extra=["--layout", "new"])
        procs["audioldm"] = launcher.spawn("audioldm", 0, speed=20.0, data=root / "audioldm")
        modern = ModernApp(script)
        for sp in procs.values():
            sp.wait_ready(120)
        modern.wait_ready(120)
        yield {**procs, "modern": modern, "root": root}
    finally:
        for sp in procs.values():
            sp.terminate()
        for sp in procs.values():
            sp.stop()
        if modern is not None:
            modern.stop()


@pytest.fixture
async def pool() -> AsyncIterator[ConnectionPool]:
    """A real connection pool, closed after the test."""
    p = ConnectionPool()
    yield p
    await p.close()


def _record(kind: ServiceKind, url: str, protocol: str = "gradio-3") -> ServiceRecord:
    parts = urlsplit(url)
    assert parts.hostname and parts.port
    return ServiceRecord(kind, parts.hostname, parts.port, url.rstrip("/"), protocol)


def _rvc(url: str, pool: ConnectionPool, **kwargs: Any) -> RvcBackend:
    record = _record(ServiceKind("rvc"), url)
    return RvcBackend(record, lambda: pool.session(record.id), timeouts=FAST, **kwargs)


def _audioldm(url: str, pool: ConnectionPool, timeouts: GradioTimeouts = FAST) -> AudioLdmBackend:
    record = _record(ServiceKind("audioldm"), url)
    return AudioLdmBackend(record, lambda: pool.session(record.id), timeouts=timeouts)


async def _run(backend: Backend, job: JobRequest, timeout: float = 60.0) -> list[JobStatus]:
    """Every status of a job, up to the terminal one, within ``timeout``."""
    statuses: list[JobStatus] = []
    async with asyncio.timeout(timeout):
        async for status in backend.submit(job):
            statuses.append(status)
    assert statuses and statuses[-1].code.terminal, statuses
    assert all(not s.code.terminal for s in statuses[:-1])
    return statuses


def _tone(path: Path, freq: float = TONE_HZ, seconds: float = 1.0, rate: int = 22050) -> Path:
    t = np.arange(int(rate * seconds)) / rate
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((0.4 * np.sin(2 * np.pi * freq * t) * 32767).astype("<i2").tobytes())
    return path


def _analyse(path: Path) -> tuple[int, float, float]:
    """(sample rate, seconds, dominant frequency) of a 16-bit WAV."""
    with wave.open(str(path)) as w:
        rate, n, channels = w.getframerate(), w.getnframes(), w.getnchannels()
        samples = np.frombuffer(w.readframes(n), dtype="<i2").reshape(-1, channels).mean(axis=1)
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return rate, n / rate, float(np.fft.rfftfreq(len(samples), 1.0 / rate)[spectrum.argmax()])


def _mp4_seconds(path: Path) -> float:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        return float(stream.duration * stream.time_base)


def _job(tmp_path: Path, prompt: str = "", inputs: list[Path] | None = None, **params: Any) -> JobRequest:
    return JobRequest("job-1", "voice_conversion" if inputs is not None else "sound_effects", prompt, params,
                      inputs or [], tmp_path / "out")


# ---------------------------------------------------------------- RVC


@pytest.mark.parametrize(("app", "semitones"), [("rvc", 7), ("rvc-new", -5)])
async def test_rvc_converts_in_both_layouts(apps: dict[str, Any], pool: ConnectionPool, tmp_path: Path, app: str,
                                            semitones: int) -> None:
    backend = _rvc(apps[app].url, pool)
    assert isinstance(backend, Backend) and backend.capabilities == ("voice_conversion",)
    job = _job(tmp_path, inputs=[_tone(tmp_path / "line.wav")], pitch=semitones)
    statuses = await _run(backend, job)
    await backend.close()
    assert [s.code for s in statuses] == [StatusCode.RUNNING] + [StatusCode.PROGRESS] * 3 + [StatusCode.SUCCEEDED]
    assert [(s.step, s.total) for s in statuses[1:4]] == [(1, 3), (2, 3), (3, 3)]
    assert "loading voice aria-v2-40k.pth" in statuses[1].message and "uploading" in statuses[2].message
    done = statuses[-1]
    assert done.message.startswith("Success.") and done.remote_ref == statuses[0].remote_ref
    (out,) = done.outputs
    assert out.path.parent == job.output_dir.resolve() and out.mime == "audio/x-wav" and out.bytes > 1000
    rate, seconds, peak = _analyse(out.path)
    assert rate == 40000 and seconds == pytest.approx(1.0, rel=0.02)
    assert peak == pytest.approx(TONE_HZ * 2 ** (semitones / 12), rel=0.03)


@pytest.mark.parametrize(("params", "default", "voice", "rate"), [
    ({"voice": "chorus-v1-40k.pth"}, "bruno-v2-48k.pth", "chorus-v1-40k.pth", 40000),  # params win
    ({}, "bruno-v2-48k.pth", "bruno-v2-48k.pth", 48000),                              # then the default
    ({}, None, "aria-v2-40k.pth", 40000),                                             # then the first offered
])
async def test_rvc_voice_comes_from_params_then_default_then_first(apps: dict[str, Any], pool: ConnectionPool,
                                                                    tmp_path: Path, params: dict[str, str],
                                                                    default: str | None, voice: str,
                                                                    rate: int) -> None:
    backend = _rvc(apps["rvc"].url, pool, default_voice=default)
    statuses = await _run(backend, _job(tmp_path, inputs=[_tone(tmp_path / "in.wav")], **params))
    done = statuses[-1]
    assert done.code is StatusCode.SUCCEEDED and done.detail["voice"] == voice
    # The server's own words: the index it used is the loaded voice's (the browser's hand-over, reproduced).
    assert f"/logs/{voice.removesuffix('.pth')}/" in done.message
    assert _analyse(done.outputs[0].path)[0] == rate
    assert done.outputs[0].path.name == f"in_{voice.removesuffix('.pth')}.wav"


async def test_rvc_refuses_a_voice_it_does_not_offer(apps: dict[str, Any], pool: ConnectionPool,
                                                     tmp_path: Path) -> None:
    backend = _rvc(apps["rvc"].url, pool)
    statuses = await _run(backend, _job(tmp_path, inputs=[_tone(tmp_path / "in.wav")], voice="nobody.pth"))
    assert [s.code for s in statuses] == [StatusCode.RUNNING, StatusCode.FAILED]
    assert statuses[-1].failure is FailureCode.VALIDATION
    assert "'nobody.pth' is not offered" in statuses[-1].message and "aria-v2-40k.pth" in statuses[-1].message


async def test_rvc_finds_a_voice_added_after_its_page_was_built(apps: dict[str, Any], pool: ConnectionPool,
                                                                tmp_path: Path) -> None:
    backend = _rvc(apps["rvc-new"].url, pool)
    await backend.app.load_config()  # the cached dropdown does not know the new voice
    (apps["root"] / "rvc-new" / "assets" / "weights" / "dora-v2.pth").write_bytes(b"any checkpoint")
    statuses = await _run(backend, _job(tmp_path, inputs=[_tone(tmp_path / "in.wav")], voice="dora-v2.pth",
                                        pitch=12))
    done = statuses[-1]
    assert done.code is StatusCode.SUCCEEDED and done.detail["voice"] == "dora-v2.pth"
    assert _analyse(done.outputs[0].path)[2] == pytest.approx(2 * TONE_HZ, rel=0.03)


@pytest.mark.parametrize(("params", "says"), [({"pitch": "high"}, "pitch must be a number of semitones"),
                                              ({"pitch": 30}, "pitch 30 is outside what this RVC allows (-24 to 24"),
                                              ({"f0_method": "yin"}, "pitch method 'yin' is not offered"),
                                              ({"speaker_id": "x"}, "speaker_id must be a whole number")])
async def test_rvc_rejects_bad_parameters(apps: dict[str, Any], pool: ConnectionPool, tmp_path: Path,
                                          params: dict[str, Any], says: str) -> None:
    statuses = await _run(_rvc(apps["rvc-new"].url, pool), _job(tmp_path, inputs=[_tone(tmp_path / "in.wav")],
                                                                 **params))
    assert statuses[-1].failure is FailureCode.VALIDATION and statuses[-1].message.startswith(says)


@pytest.mark.parametrize("inputs", [[], ["missing.wav"], ["a-folder"]])
async def test_rvc_missing_input_fails_validation_without_calling(pool: ConnectionPool, tmp_path: Path,
                                                                  inputs: list[str]) -> None:
    (tmp_path / "a-folder").mkdir()
    backend = _rvc("http://127.0.0.1:9", pool)  # nothing listens: the job must fail before any request
    statuses = await _run(backend, _job(tmp_path, inputs=[tmp_path / name for name in inputs]), timeout=5)
    assert len(statuses) == 1 and statuses[0].failure is FailureCode.VALIDATION
    assert statuses[0].message.startswith("voice conversion needs a readable audio file")
    assert pool.open_sessions == 0


async def test_rvc_error_text_without_audio_fails_with_the_error_line(apps: dict[str, Any], pool: ConnectionPool,
                                                                      tmp_path: Path) -> None:
    bogus = tmp_path / "notes.wav"
    bogus.write_text("this is not audio")
    statuses = await _run(_rvc(apps["rvc"].url, pool), _job(tmp_path, inputs=[bogus]))
    failed = statuses[-1]
    assert failed.failure is FailureCode.RUNTIME and failed.outputs == ()
    assert failed.message.startswith("RVC could not convert notes.wav: RuntimeError: Failed to load audio:")
    assert "Traceback" in failed.detail["info"] and "\n" not in failed.message


@pytest.mark.parametrize(("app", "layout", "methods"), [("rvc", "old", ["pm", "harvest", "crepe", "rmvpe"]),
                                                        ("rvc-new", "new", ["pm", "rmvpe", "fcpe"])])
async def test_rvc_probe_lists_voices_and_lookup_is_honest(apps: dict[str, Any], pool: ConnectionPool,
                                                           tmp_path: Path, app: str, layout: str,
                                                           methods: list[str]) -> None:
    backend = _rvc(apps[app].url, pool)
    info = await backend.probe()
    voices = info.pop("voices")
    assert voices[:3] == VOICES  # a later test adds a voice
    assert info == {"f0_methods": methods, "layout": layout, "protocol": "gradio-3"}
    (status,) = [s async for s in backend.lookup("abc", _job(tmp_path, inputs=[]))]
    assert status.failure is FailureCode.UNKNOWN_REMOTE and "cannot be re-attached" in status.message
    result = await backend.cancel("abc")
    assert not result.confirmed and not result.can_stop and "nothing to stop" in result.message


async def test_rvc_cancel_says_running_work_cannot_be_stopped(apps: dict[str, Any], pool: ConnectionPool,
                                                              tmp_path: Path) -> None:
    backend = _rvc(apps["rvc"].url, pool)
    job = _job(tmp_path, inputs=[_tone(tmp_path / "long.wav", seconds=20.0)], f0_method="harvest")
    statuses = backend.submit(job)
    first = await anext(statuses)
    while (status := await anext(statuses)).step != 3:
        pass
    converting = asyncio.create_task(anext(statuses))
    async with asyncio.timeout(10):
        while not backend.app.in_flight(first.remote_ref or ""):
            await asyncio.sleep(0.01)
    result = await backend.cancel(first.remote_ref or "")
    assert not result.confirmed and not result.can_stop and "cannot stop work that has started" in result.message
    assert (await converting).code is StatusCode.SUCCEEDED  # it really did run to the end
    await statuses.aclose()


# ---------------------------------------------------------------- AudioLDM


async def test_audioldm_gives_a_16k_wav_and_the_mp4(apps: dict[str, Any], pool: ConnectionPool,
                                                    tmp_path: Path) -> None:
    backend = _audioldm(apps["audioldm"].url, pool)
    assert backend.capabilities == ("sound_effects", "ambient_audio")
    job = _job(tmp_path, "rain on a tin roof", duration=5, seed=7, candidates=1, model="audioldm-s-full")
    statuses = await _run(backend, job)
    assert [s.code for s in statuses] == [StatusCode.RUNNING, StatusCode.PROGRESS, StatusCode.PROGRESS,
                                          StatusCode.SUCCEEDED]
    wav, mp4 = statuses[-1].outputs
    assert (wav.mime, mp4.mime) == ("audio/x-wav", "video/mp4") and wav.path.stem == mp4.path.stem
    rate, seconds, _ = _analyse(wav.path)
    assert rate == 16000 and seconds == pytest.approx(5.0, rel=0.05)
    assert _mp4_seconds(mp4.path) == pytest.approx(5.0, rel=0.05)
    assert statuses[-1].message == "5 s of audio for 'rain on a tin roof' (seed 7)"
    assert statuses[-1].detail["chosen"] == {"seed": 7}


@pytest.mark.parametrize(("asked", "given"), [(6.0, 5.0), (30.0, 10.0), (1.0, 2.5)])
async def test_audioldm_snaps_duration_to_the_slider_and_says_so(apps: dict[str, Any], pool: ConnectionPool,
                                                                 tmp_path: Path, asked: float, given: float) -> None:
    statuses = await _run(_audioldm(apps["audioldm"].url, pool), _job(tmp_path, "wind", duration=asked))
    done = statuses[-1]
    note = f"duration {asked:g} s is not offered; using {given:g} s (this app takes 2.5–10 s in steps of 2.5)"
    assert note in statuses[1].message and note in done.message
    assert _analyse(done.outputs[0].path)[1] == pytest.approx(given, rel=0.05)


@pytest.mark.parametrize(("prompt", "params", "says"), [
    ("rain", {"model": "audioldm-xxl"}, "model 'audioldm-xxl' is not offered (choose one of audioldm-s-full"),
    ("   ", {}, "sound generation needs a text prompt"),
    ("rain", {"duration": "long"}, "duration must be a number, not 'long'"),
])
async def test_audioldm_rejects_bad_requests_before_sending(apps: dict[str, Any], pool: ConnectionPool,
                                                            tmp_path: Path, prompt: str, params: dict[str, Any],
                                                            says: str) -> None:
    statuses = await _run(_audioldm(apps["audioldm"].url, pool), _job(tmp_path, prompt, **params))
    assert len(statuses) == 1 and statuses[0].failure is FailureCode.VALIDATION
    assert statuses[0].message.startswith(says)


async def test_standin_killed_mid_request_fails_unreachable(standin: Callable[..., StandinProcess],
                                                            pool: ConnectionPool, tmp_path: Path) -> None:
    sp = standin("audioldm", speed=0.05)  # a 5 s sound takes about 18 s here
    backend = _audioldm(sp.url, pool)
    statuses = backend.submit(_job(tmp_path, "thunder", duration=5, candidates=1))
    assert (await anext(statuses)).code is StatusCode.RUNNING
    assert (await anext(statuses)).code is StatusCode.PROGRESS
    generating = asyncio.create_task(anext(statuses))
    async with asyncio.timeout(10):
        while not any("text2audio 'thunder'" in line for line in list(sp.output)):
            await asyncio.sleep(0.02)  # the stand-in logs when the request reached the model
    started = time.monotonic()
    sp.kill()
    failed = await asyncio.wait_for(generating, 10)
    assert time.monotonic() - started < 5
    assert failed.code is StatusCode.FAILED and failed.failure is FailureCode.UNREACHABLE
    assert "connection dropped while running fn_index 0" in failed.message
    await statuses.aclose()


# ---------------------------------------------------------------- Gradio 6 through gradio_client


async def test_modern_gradio_reports_progress_and_delivers_files(apps: dict[str, Any], pool: ConnectionPool,
                                                                 tmp_path: Path) -> None:
    backend = _audioldm(apps["modern"].url, pool)
    info = await backend.probe()
    assert info["protocol"] == "gradio-6" and info["endpoint"] == "text2audio" and info["models"] == []
    job = _job(tmp_path, "a bell", duration=6, model="audioldm-m-full")
    statuses = await _run(backend, job)
    await backend.close()
    steps = [(s.step, s.total, s.unit, s.message) for s in statuses if s.code is StatusCode.PROGRESS and s.total == 4]
    assert steps and all(unit == "steps" and message == "sampling" for _, _, unit, message in steps)
    assert [s for s, *_ in steps] == sorted(s for s, *_ in steps)
    done = statuses[-1]
    assert done.code is StatusCode.SUCCEEDED, done.message
    assert "using 5 s (this app takes 5–15 s in steps of 2.5)" in done.message
    assert "this app has no model choice; model 'audioldm-m-full' is ignored" in done.message
    wav, mp4 = done.outputs
    assert wav.path.parent == mp4.path.parent == job.output_dir.resolve()
    rate, seconds, peak = _analyse(wav.path)
    assert rate == 48000 and seconds == pytest.approx(5.0, rel=0.05) and peak == pytest.approx(330, rel=0.02)


async def test_modern_gradio_error_fails_with_the_apps_words(apps: dict[str, Any], pool: ConnectionPool,
                                                             tmp_path: Path) -> None:
    backend = _audioldm(apps["modern"].url, pool)
    statuses = await _run(backend, _job(tmp_path, "fail please", duration=5))
    await backend.close()
    assert statuses[-1].failure is FailureCode.RUNTIME
    assert statuses[-1].message.endswith("text2audio failed: the model ran out of GPU memory")


async def test_modern_gradio_cancel_drops_queued_work_only(apps: dict[str, Any], pool: ConnectionPool,
                                                           tmp_path: Path) -> None:
    backend = _audioldm(apps["modern"].url, pool)
    first = backend.submit(_job(tmp_path, "slow bell", duration=5))
    second = backend.submit(_job(tmp_path / "b", "bell", duration=5))
    running = [await anext(first)]
    while running[-1].code is not StatusCode.PROGRESS or running[-1].total != 4:
        running.append(await anext(first))  # the first job holds the app's only worker now
    waiting = [await anext(second)]
    async with asyncio.timeout(15):
        while waiting[-1].code is not StatusCode.QUEUED or waiting[-1].queue_rank is None:
            waiting.append(await anext(second))
    dropped = await backend.cancel(waiting[-1].remote_ref or "")
    assert dropped.confirmed and "dropped from the queue" in dropped.message
    kept = await backend.cancel(running[-1].remote_ref or "")
    assert not kept.confirmed and not kept.can_stop and "cannot stop work that has started" in kept.message
    async with asyncio.timeout(30):
        gone = [s async for s in second]
        rest = [s async for s in first]
    assert [s.code for s in gone] == [StatusCode.CANCELLED] and gone[0].remote_ref == waiting[-1].remote_ref
    assert rest[-1].code is StatusCode.SUCCEEDED  # dropping the queued job left the running one alone
    await backend.close()


async def test_modern_gradio_killed_mid_request_fails_unreachable(apps: dict[str, Any], pool: ConnectionPool,
                                                                   tmp_path: Path) -> None:
    doomed = ModernApp(apps["root"] / "modern_app.py")  # its own copy: this one gets killed
    try:
        doomed.wait_ready(120)
        backend = _audioldm(doomed.url, pool)
        statuses = backend.submit(_job(tmp_path, "slow bell", duration=5))
        async with asyncio.timeout(30):
            while (status := await anext(statuses)).total != 4:
                pass  # until the app reports sampling: the function is running there
            started = time.monotonic()
            doomed.proc.kill()
            rest = [s async for s in statuses]
        assert time.monotonic() - started < 5
        assert rest[-1].failure is FailureCode.UNREACHABLE
        assert rest[-1].message.endswith("connection dropped while running text2audio")
        await backend.close()
    finally:
        doomed.stop()


# ---------------------------------------------------------------- misbehaving servers

LDM_CONFIG = {
    "version": "3.50.2", "title": "Gradio",
    "components": [
        {"id": 1, "type": "textbox", "props": {"label": "Input your text here.", "value": ""}},
        {"id": 2, "type": "slider", "props": {"label": "Duration (seconds)", "minimum": 2.5, "maximum": 10,
                                              "step": 2.5, "value": 5}},
        {"id": 3, "type": "slider", "props": {"label": "Guidance scale", "minimum": 0, "maximum": 5, "value": 2.5}},
        {"id": 4, "type": "number", "props": {"label": "Change this value", "value": 45}},
        {"id": 5, "type": "slider", "props": {"label": "number of candidates", "minimum": 1, "maximum": 5,
                                              "value": 3}},
        {"id": 6, "type": "video", "props": {"label": "Output"}},
    ],
    "dependencies": [{"inputs": [1, 2, 3, 4, 5], "outputs": [6], "api_name": None}],
}
VIDEO = [{"name": "/tmp/gradio/abc/out.mp4", "data": None, "is_file": True, "orig_name": "out.mp4"}, None]


@pytest.mark.parametrize(("answer", "failure", "says"), [
    (lambda: web.Response(body=b'{"data": [[{"name": "/tmp/gra', content_type="application/json"),
     FailureCode.BAD_RESPONSE, "fn_index 0 answered with something that is not JSON"),
    (lambda: web.json_response({"data": "done"}), FailureCode.BAD_RESPONSE,
     "fn_index 0 answered with an unexpected shape (expected 1 output values, got str)"),
    (lambda: web.json_response({"data": [42]}), FailureCode.BAD_RESPONSE,
     "fn_index 0 answered without an audio or video file (got [42])"),
    (lambda: web.json_response({"error": "CUDA out of memory.\nTried to allocate"}, status=500),
     FailureCode.RUNTIME, "fn_index 0 failed: CUDA out of memory."),
    (lambda: web.json_response({"error": None}, status=500), FailureCode.RUNTIME,
     "fn_index 0 failed on the server and did not say why"),
    (lambda: web.Response(text="Bad Gateway", status=502), FailureCode.UNREACHABLE,
     "HTTP 502 while running fn_index 0"),
    (lambda: web.json_response({"data": [VIDEO]}), FailureCode.MISSING_OUTPUT,
     "no answer in time while fetching the result file out.mp4"),
], ids=["truncated-json", "data-not-a-list", "wrong-type", "error-500", "silent-500", "bad-gateway",
        "file-never-arrives"])
async def test_bad_answers_fail_clearly_within_the_timeout(pool: ConnectionPool, tmp_path: Path,
                                                           answer: Callable[[], web.StreamResponse],
                                                           failure: FailureCode, says: str) -> None:
    released = asyncio.Event()
    config_reads: list[int] = []

    async def config(_: web.Request) -> web.StreamResponse:
        config_reads.append(1)
        return web.json_response(LDM_CONFIG)

    async def predict(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        assert body["fn_index"] == 0 and body["data"][0] == "rain" and body["session_hash"]
        return answer()

    async def never_arrives(_: web.Request) -> web.StreamResponse:
        await released.wait()  # the file never comes; released at the end so the server can shut down
        return web.Response(status=404)

    timeouts = GradioTimeouts(connect=1, config=2, call=2, upload=2, download=0.5, poll=0.02)
    async with serve({"/config": config, "/run/predict": predict, "/file={name:.+}": never_arrives}) as url:
        backend = _audioldm(url, pool, timeouts)
        started = time.monotonic()
        try:
            for _ in range(2):
                statuses = await _run(backend, _job(tmp_path, "rain"), timeout=5)
                assert statuses[-1].failure is failure
                message = statuses[-1].message
                assert message.startswith(f"audioldm@{urlsplit(url).netloc}: ") and says in message, message
        finally:
            released.set()
    assert time.monotonic() - started < 4
    assert len(config_reads) == 1  # /config is read once and cached
    assert not list((tmp_path / "out").glob("*.part"))


async def test_truncated_config_fails_as_a_bad_response(pool: ConnectionPool, tmp_path: Path) -> None:
    async def config(_: web.Request) -> web.StreamResponse:
        return web.Response(body=json.dumps(LDM_CONFIG).encode()[:200], content_type="application/json")

    async with serve({"/config": config}) as url:
        statuses = await _run(_audioldm(url, pool), _job(tmp_path, "rain"), timeout=5)
    assert statuses[-1].failure is FailureCode.BAD_RESPONSE
    assert "not JSON" in statuses[-1].message and "reading its Gradio config" in statuses[-1].message


async def test_config_is_read_once_and_refetched_only_on_request(pool: ConnectionPool) -> None:
    reads: list[int] = []

    async def config(_: web.Request) -> web.StreamResponse:
        reads.append(1)
        return web.json_response(LDM_CONFIG)

    async with serve({"/config": config}) as url:
        app = GradioApp(url, lambda: pool.session("x"), timeouts=FAST)
        first = await app.load_config()
        assert await app.load_config() is first and app.legacy and app.protocol == "gradio-3"
        ep = await app.endpoint(where=lambda e: any(c.mentions("duration") for c in e.inputs))
        assert ep.fn_index == 0 and ep.api_name is None and [c.type for c in ep.outputs] == ["video"]
        assert ep.defaults() == ["", 5, 2.5, 45, 3]
        await app.load_config(refresh=True)
        await app.close()
    assert len(reads) == 2
