"""The Gradio stand-ins (RVC and AudioLDM on Gradio 3.50, the WanGP web UI on current Gradio), driven the
way a real client drives the real apps: /config, plain REST (/upload, /run/predict, /file=) and PyAV."""
from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import uuid
import wave
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import av
import numpy as np
import pytest

from backlot.standins import launcher
from backlot.standins.launcher import StandinProcess
from tests.conftest import conformance_script

pytestmark = pytest.mark.slow

TONE_HZ = 220.0
TONE_SECONDS = 1.0
# Apps shared by the module (each takes seconds to start); started in parallel, stopped at teardown.
MODULE_APPS = {"rvc": [], "audioldm": [], "wan2gp-webui": []}


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, StandinProcess]]:
    """RVC (old layout), AudioLDM and the WanGP web UI, each started once for this module."""
    root = tmp_path_factory.mktemp("gradio-standins")
    procs: dict[str, StandinProcess] = {}
    try:
        for kind, extra in MODULE_APPS.items():
            procs[kind] = launcher.spawn(kind, 0, speed=20.0, data=root / kind, extra=extra)
        for sp in procs.values():
            sp.wait_ready(120)
        yield procs
    finally:
        for sp in procs.values():
            sp.terminate()  # all at once: each takes about a second to close its server
        codes = {kind: sp.stop() for kind, sp in procs.items()}
    assert all(code == 0 for code in codes.values()), codes


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """One HTTP session per test, closed with it."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        yield session


def _tone_wav(freq: float = TONE_HZ, seconds: float = TONE_SECONDS, rate: int = 22050, channels: int = 1) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    mono = (0.4 * np.sin(2 * np.pi * freq * t) * 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.repeat(mono, channels).tobytes())
    return buf.getvalue()


def _analyse_wav(data: bytes) -> tuple[int, float, float]:
    """(sample rate, duration in seconds, dominant frequency in Hz) of a 16-bit WAV."""
    with wave.open(io.BytesIO(data)) as w:
        rate, n, channels = w.getframerate(), w.getnframes(), w.getnchannels()
        assert w.getsampwidth() == 2
        samples = np.frombuffer(w.readframes(n), dtype="<i2").reshape(-1, channels).mean(axis=1)
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return rate, n / rate, float(np.fft.rfftfreq(len(samples), 1.0 / rate)[spectrum.argmax()])


async def _config(http: aiohttp.ClientSession, sp: StandinProcess) -> dict[str, Any]:
    async with http.get(sp.url + "/config") as r:
        assert r.status == 200
        return await r.json()


def _fn_index(cfg: dict[str, Any], api_name: str) -> int:
    return next(i for i, d in enumerate(cfg["dependencies"]) if d.get("api_name") == api_name)


async def _predict(http: aiohttp.ClientSession, sp: StandinProcess, fn_index: int, data: list[Any]) -> list[Any]:
    async with http.post(sp.url + "/run/predict", json={"fn_index": fn_index, "data": data}) as r:
        body = await r.json()
        assert r.status == 200, body
        return body["data"]


async def _upload(http: aiohttp.ClientSession, sp: StandinProcess, payload: bytes, name: str) -> str:
    form = aiohttp.FormData()
    form.add_field("files", payload, filename=name, content_type="audio/wav")
    async with http.post(sp.url + "/upload", data=form) as r:
        assert r.status == 200
        return (await r.json())[0]


async def _download(http: aiohttp.ClientSession, sp: StandinProcess, name: str) -> bytes:
    async with http.get(f"{sp.url}/file={name}") as r:
        assert r.status == 200
        return await r.read()


async def _load_voice(http: aiohttp.ClientSession, sp: StandinProcess, cfg: dict[str, Any], voice: str) -> list[Any]:
    return await _predict(http, sp, _fn_index(cfg, "infer_change_voice"), [voice, 0.33, 0.33])


def _voices(cfg: dict[str, Any]) -> list[str]:
    dropdown = next(c for c in cfg["components"] if c["type"] == "dropdown")
    return [choice[1] if isinstance(choice, list) else choice for choice in dropdown["props"]["choices"]]


@pytest.mark.parametrize("app", sorted(MODULE_APPS))
def test_conformance_script_passes(apps: dict[str, StandinProcess], app: str) -> None:
    script = conformance_script("gradio_apps.py")
    done = subprocess.run([sys.executable, str(script), apps[app].url, "--app", app],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


async def test_rvc_convert_without_a_voice_answers_the_error_text(apps: dict[str, StandinProcess],
                                                                  http: aiohttp.ClientSession) -> None:
    rvc = apps["rvc"]
    cfg = await _config(http, rvc)
    path = await _upload(http, rvc, _tone_wav(), "tone.wav")
    unloaded = await _load_voice(http, rvc, cfg, "")  # an empty name unloads, as RVC's "unload" button does
    assert unloaded[0]["visible"] is False and unloaded[3:] == ["", ""]
    info, audio = await _predict(http, rvc, _fn_index(cfg, "infer_convert"),
                                 [0, path, 12, None, "rmvpe", "", "", 0.75, 3, 0, 0.25, 0.33])
    assert "'NoneType' object has no attribute 'pipeline'" in info and "Traceback" in info
    assert audio is None


@pytest.mark.parametrize(("voice", "semitones", "resample_sr", "rate"),
                         [("aria-v2-40k.pth", 12, 0, 40000), ("bruno-v2-48k.pth", -5, 32000, 32000)])
async def test_rvc_old_layout_converts_a_server_path(apps: dict[str, StandinProcess], http: aiohttp.ClientSession,
                                                     voice: str, semitones: int, resample_sr: int, rate: int) -> None:
    rvc = apps["rvc"]
    cfg = await _config(http, rvc)
    assert voice in _voices(cfg)
    speaker, protect0, protect1, index, index_batch = await _load_voice(http, rvc, cfg, voice)
    assert speaker["visible"] is True and speaker["maximum"] >= 1
    assert protect0["value"] == protect1["value"] == 0.33
    assert index["value"].endswith(".index") and index == index_batch
    # Stereo at 22.05 kHz: the app must mix down and resample like RVC's loader.
    path = await _upload(http, rvc, _tone_wav(channels=2), "tone.wav")
    info, audio = await _predict(http, rvc, _fn_index(cfg, "infer_convert"),
                                 [0, path, semitones, None, "rmvpe", "", index["value"], 0.75, 3, resample_sr,
                                  0.25, 0.33])
    assert info.startswith("Success.\nIndex:\n") and "Time:\nnpy: " in info, info
    assert audio["is_file"] and audio["name"].endswith(".wav")
    out_rate, seconds, peak = _analyse_wav(await _download(http, rvc, audio["name"]))
    assert out_rate == rate
    assert seconds == pytest.approx(TONE_SECONDS, rel=0.01)
    assert peak == pytest.approx(TONE_HZ * 2 ** (semitones / 12), rel=0.03)


async def test_rvc_new_layout_takes_an_audio_upload(standin: Callable[..., StandinProcess],
                                                    http: aiohttp.ClientSession) -> None:
    rvc = standin("rvc", "--layout", "new", speed=20)
    cfg = await _config(http, rvc)
    types = {c["id"]: c["type"] for c in cfg["components"]}
    convert = cfg["dependencies"][_fn_index(cfg, "infer_convert")]
    assert [types[i] for i in convert["inputs"]] == ["slider", "audio", "slider", "radio", "dropdown", "slider",
                                                    "slider", "slider", "slider"]
    radio = next(c for c in cfg["components"] if c["id"] == convert["inputs"][3])
    assert [c[1] if isinstance(c, list) else c for c in radio["props"]["choices"]] == ["pm", "rmvpe", "fcpe"]
    fn = _fn_index(cfg, "infer_convert")
    tone = _tone_wav(rate=44100)
    inline = {"name": "tone.wav", "data": "data:audio/wav;base64," + base64.b64encode(tone).decode()}
    info, audio = await _predict(http, rvc, fn, [0, inline, 7, "rmvpe", "", 0.75, 0, 0.25, 0.33])
    assert "no attribute 'pipeline'" in info and audio is None
    index = (await _load_voice(http, rvc, cfg, "aria-v2-40k.pth"))[3]["value"]
    uploaded = {"name": await _upload(http, rvc, tone, "tone.wav"), "data": None, "is_file": True}
    for audio_in in (inline, uploaded):
        info, audio = await _predict(http, rvc, fn, [0, audio_in, 7, "fcpe", index, 0.75, 0, 0.25, 0.33])
        assert info.startswith("Success."), info
        rate, seconds, peak = _analyse_wav(await _download(http, rvc, audio["name"]))
        assert rate == 40000
        assert seconds == pytest.approx(TONE_SECONDS, rel=0.01)
        assert peak == pytest.approx(TONE_HZ * 2 ** (7 / 12), rel=0.03)
    assert rvc.stop() == 0


def _mp4_audio(path: Path) -> tuple[int, int, float, np.ndarray, int]:
    """(rate, channels, stream seconds, decoded samples, video stream count) of an MP4."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        videos = len(container.streams.video)
        seconds = float(stream.duration * stream.time_base)
        rate, channels = stream.rate, stream.codec_context.channels
        pcm = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
    return rate, channels, seconds, pcm, videos


async def test_audioldm_answers_a_waveform_mp4_with_16k_audio(apps: dict[str, StandinProcess],
                                                              http: aiohttp.ClientSession, tmp_path: Path) -> None:
    ldm = apps["audioldm"]
    results = []
    for i, (text, seed, duration) in enumerate([("rain and distant thunder", 42, 2.5), ("rain and distant thunder",
                                                42, 2.5), ("rain and distant thunder", 43, 2.5),
                                                ("footsteps in the wind", 7, 5.0)]):
        (video, subtitles), = await _predict(http, ldm, 0, [text, duration, 2.5, seed, 1, "audioldm-s-full"])
        assert subtitles is None and video["name"].endswith(".mp4")
        path = tmp_path / f"{i}.mp4"
        path.write_bytes(await _download(http, ldm, video["name"]))
        rate, channels, seconds, pcm, videos = _mp4_audio(path)
        assert (rate, channels, videos) == (16000, 1, 1)
        assert seconds == pytest.approx(duration, rel=0.05)
        assert len(pcm) / rate == pytest.approx(duration, rel=0.05)
        results.append(pcm)
    assert np.array_equal(results[0], results[1])  # same text and seed: same audio
    assert not np.array_equal(results[0], results[2])


async def test_audioldm_rejects_an_unknown_model(apps: dict[str, StandinProcess], http: aiohttp.ClientSession) -> None:
    async with http.post(apps["audioldm"].url + "/run/predict",
                         json={"fn_index": 0, "data": ["rain", 2.5, 2.5, 1, 1, "audioldm-xxl"]}) as r:
        assert r.status == 500


async def test_wangp_web_ui_exposes_no_api(apps: dict[str, StandinProcess], http: aiohttp.ClientSession) -> None:
    ui = apps["wan2gp-webui"]
    cfg = await _config(http, ui)
    assert len(cfg["dependencies"]) >= 8
    assert all(d.get("api_visibility") == "private" for d in cfg["dependencies"])
    assert any(c["type"] == "state" for c in cfg["components"])
    async with http.get(ui.url + "/gradio_api/info") as r:
        info = await r.json()
    assert info["named_endpoints"] == {} and info["unnamed_endpoints"] == {}


async def _run_in_browser_session(http: aiohttp.ClientSession, ui: StandinProcess, fn_index: int, data: list[Any],
                                  session: str) -> dict[str, Any]:
    """Run one event the way Gradio's frontend does: join the queue, then read the session's event stream."""
    body = {"data": data, "fn_index": fn_index, "session_hash": session, "event_data": None, "trigger_id": None}
    async with http.post(ui.url + "/gradio_api/queue/join", json=body) as r:
        assert r.status == 200
        event_id = (await r.json())["event_id"]
    async with http.get(ui.url + "/gradio_api/queue/data", params={"session_hash": session}) as r:
        async for raw in r.content:
            line = raw.decode().strip()
            if line.startswith("data:"):
                msg = json.loads(line[5:])
                if msg.get("msg") == "process_completed" and msg.get("event_id") == event_id:
                    assert msg["success"], msg
                    return msg["output"]
    raise AssertionError("the event stream ended before the event completed")


async def test_wangp_web_ui_generates_through_its_event_chain(apps: dict[str, StandinProcess],
                                                              http: aiohttp.ClientSession) -> None:
    """Only a browser session can generate: the chained private events share that session's gr.State."""
    ui = apps["wan2gp-webui"]
    cfg = await _config(http, ui)
    comps = {c["id"]: c for c in cfg["components"]}
    chain = [d for d in cfg["dependencies"] if d["api_name"] != "abort_generation"]
    assert [d["api_name"] for d in chain][:3] == ["validate_wizard_prompt", "save_inputs",
                                                 "process_prompt_and_add_tasks"]
    assert all(d["trigger_after"] == chain[i]["id"] for i, d in enumerate(chain[1:]))
    session = uuid.uuid4().hex[:11]
    output: dict[str, Any] = {}
    for dep in chain:
        data = [comps[i].get("props", {}).get("value") for i in dep["inputs"]]
        data = ["a lighthouse in a storm" if str(comps[i].get("props", {}).get("label", "")).startswith("Prompts")
                else value for i, value in zip(dep["inputs"], data)]
        data = [5 if comps[i].get("props", {}).get("label", "").startswith("Number of frames") else value
                for i, value in zip(dep["inputs"], data)]
        output[dep["api_name"]] = await _run_in_browser_session(http, ui, dep["id"], data, session)
    assert output["process_tasks"]["data"] == ["Done"]
    gallery = output["finalize_generation"]["data"][0]
    assert len(gallery) == 1 and gallery[0]["video"]["path"].endswith("_a_lighthouse_in_a_storm.mp4")
