"""The output viewer's players: VideoPlayer (PyAV in a worker thread) and AudioPlayer (waveform, QtMultimedia)."""
from __future__ import annotations

import wave
from fractions import Fraction
from itertools import pairwise
from pathlib import Path

import av
import numpy as np
import pytest
from PySide6.QtCore import QPoint, QRect, QSize, Qt
from PySide6.QtGui import qGray

from backlot.widgets import audio_player, video_player
from backlot.widgets.media import AudioPlayer, VideoPlayer, fit_rect

W, H, BITS, STRIPE = 64, 48, 6, 10


def pattern(k: int) -> np.ndarray:
    """A W x H picture that shows ``k`` in binary: stripe b (10 px wide, from the left) is white when bit b is set."""
    img = np.zeros((H, W, 3), np.uint8)
    for b in range(BITS):
        if k >> b & 1:
            img[:, b * STRIPE:(b + 1) * STRIPE] = 255
    return img


def write_clip(path: Path, frames: int = 24, fps: int = 24, gop: int | None = None) -> Path:
    """An H.264 clip of ``frames`` pattern frames; ``gop`` puts a keyframe every that many frames."""
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "10", **({"g": str(gop), "keyint_min": str(gop)} if gop else {})}
        for k in range(frames):
            frame = av.VideoFrame.from_ndarray(pattern(k), format="rgb24")
            frame.pts, frame.time_base = k, Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def shown_frame(player: VideoPlayer) -> int | None:
    """The frame number the player has drawn, read back from its pixels; None when nothing is drawn."""
    rect = player.picture_rect()
    if rect.isEmpty():
        return None
    image = player.grab().toImage()
    y = rect.center().y()
    k = 0
    for b in range(BITS):
        x = rect.x() + int((b * STRIPE + STRIPE / 2) / W * rect.width())
        if qGray(image.pixel(x, y)) > 128:
            k |= 1 << b
    return k


@pytest.fixture
def player(qtbot) -> VideoPlayer:
    p = VideoPlayer()
    qtbot.addWidget(p)
    p.resize(320, 280)
    p.show()
    yield p
    p.close()


def opened(qtbot, player: VideoPlayer, path: Path) -> VideoPlayer:
    player.load(path)
    qtbot.waitUntil(lambda: player.frame_count > 0 and shown_frame(player) == 0, timeout=5000)
    return player


@pytest.mark.parametrize("fps", [8, 16, 24])
def test_load_reports_count_and_fps_and_shows_the_first_frame(qtbot, player, tmp_path, fps):
    opened(qtbot, player, write_clip(tmp_path / "c.mp4", 24, fps))
    assert (player.frame_count, player.fps, player.position, player.playing) == (24, fps, 0, False)
    assert player.slider.maximum() == 23
    assert "1/24" in player.readout.text()


def test_picture_is_fitted_keeping_the_aspect_ratio():
    assert fit_rect(QSize(64, 48), QRect(0, 0, 400, 100)) == QRect(133, 0, 133, 100)
    assert fit_rect(QSize(64, 48), QRect(0, 0, 128, 400)) == QRect(0, 152, 128, 96)


def test_plays_and_pause_stops(qtbot, player, tmp_path):
    opened(qtbot, player, write_clip(tmp_path / "c.mp4", 24, 24))
    seen: list[int] = []
    player.position_changed.connect(seen.append)
    player.play()
    assert player.playing
    qtbot.waitUntil(lambda: player.position >= 6, timeout=3000)
    assert seen == sorted(seen)
    player.pause()
    stopped = player.position
    qtbot.wait(150)  # more than three frame times: nothing may move
    assert player.position == stopped and not player.playing
    qtbot.waitUntil(lambda: shown_frame(player) == stopped, timeout=2000)


def test_space_toggles(qtbot, player, tmp_path):
    opened(qtbot, player, write_clip(tmp_path / "c.mp4"))
    player.setFocus()
    qtbot.keyClick(player, Qt.Key.Key_Space)
    assert player.playing
    qtbot.keyClick(player, Qt.Key.Key_Space)
    assert not player.playing


def test_seek_shows_that_frame(qtbot, player, tmp_path):
    opened(qtbot, player, write_clip(tmp_path / "c.mp4", 40, 24))
    for n in (17, 5, 39, 0, 33):
        player.seek(n)
        assert player.position == n
        qtbot.waitUntil(lambda n=n: shown_frame(player) == n, timeout=3000)
    player.seek(1000)
    assert player.position == 39


def test_seek_beyond_the_cache_decodes_from_the_keyframe(qtbot, player, tmp_path, monkeypatch):
    frame_bytes = W * H * 3
    monkeypatch.setattr(video_player, "CACHE_BYTES", 6 * frame_bytes)  # a window of 6 frames: most seeks must decode
    opened(qtbot, player, write_clip(tmp_path / "c.mp4", 48, 24, gop=8))
    for n in (30, 3, 47, 20, 21, 12):
        player.seek(n)
        qtbot.waitUntil(lambda n=n: shown_frame(player) == n, timeout=3000)
        assert player._decoder.cached() <= 6
    player.play()
    qtbot.waitUntil(lambda: player.position >= 30, timeout=5000)  # plays through the sliding window


def test_step_moves_one_frame_and_pauses(qtbot, player, tmp_path):
    opened(qtbot, player, write_clip(tmp_path / "c.mp4"))
    player.seek(10)
    player.play()
    player.step(1)
    assert not player.playing and player.position in (11, 12)
    start = player.position
    qtbot.waitUntil(lambda: shown_frame(player) == start, timeout=2000)
    player.step(-1)
    qtbot.waitUntil(lambda: shown_frame(player) == start - 1, timeout=2000)
    qtbot.mouseClick(player.forward_button, Qt.MouseButton.LeftButton)
    assert player.position == start
    player.seek(0)
    player.step(-1)
    assert player.position == 0


def test_loop_wraps_and_without_loop_it_stops_at_the_end(qtbot, player, tmp_path):
    opened(qtbot, player, write_clip(tmp_path / "c.mp4", 24, 24))
    assert player.loop
    seen: list[int] = []
    player.position_changed.connect(seen.append)
    player.seek(18)
    player.play()
    qtbot.waitUntil(lambda: any(b < a for a, b in pairwise(seen)), timeout=3000)
    assert player.playing
    player.loop = False
    qtbot.waitUntil(lambda: not player.playing, timeout=3000)
    assert player.position == 23
    qtbot.waitUntil(lambda: shown_frame(player) == 23, timeout=2000)
    player.play()  # at the end without loop: from the start
    assert player.position == 0 and player.playing


def test_close_frees_the_decoder(qtbot, player, tmp_path):
    opened(qtbot, player, write_clip(tmp_path / "c.mp4"))
    decoder = player._decoder
    player.play()
    player.close()
    assert not decoder.thread.is_alive() and decoder.cached() == 0
    assert (player._decoder, player.frame_count, player.playing, player.picture_rect().isEmpty()) == (None, 0, False, True)
    opened(qtbot, player, write_clip(tmp_path / "d.mp4", 30, 8))  # and it can load again
    assert player.frame_count == 30


def test_loading_another_clip_drops_the_first(qtbot, player, tmp_path):
    player.load(write_clip(tmp_path / "a.mp4", 24, 24))
    first = player._decoder
    opened(qtbot, player, write_clip(tmp_path / "b.mp4", 30, 8))
    assert (player.frame_count, player.fps) == (30, 8)
    qtbot.waitUntil(lambda: not first.thread.is_alive(), timeout=3000)
    assert first.cached() == 0 and player._decoder.thread.name == "decode b.mp4"


def test_a_file_that_is_no_video_says_so(qtbot, player, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    player.load(bad)
    qtbot.waitUntil(lambda: "Cannot play bad.mp4" in player.status.text(), timeout=5000)
    player.play()
    assert player.frame_count == 0


# --- audio ---

RATE = 16000


def write_sine(path: Path) -> Path:
    """1 s mono WAV: silence for the first half, a 440 Hz sine of amplitude 0.5 in the second."""
    t = np.arange(RATE) / RATE
    samples = np.where(t >= 0.5, 0.5 * np.sin(2 * np.pi * 440 * t), 0.0)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes((samples * 32767).astype("<i2").tobytes())
    return path


@pytest.fixture
def audio(qtbot, tmp_path, monkeypatch) -> AudioPlayer:
    monkeypatch.setattr(audio_player, "_audio_outputs", list)  # as on a machine without sound
    p = AudioPlayer()
    qtbot.addWidget(p)
    p.resize(400, 120)
    p.show()
    p.load(write_sine(tmp_path / "sine.wav"))
    qtbot.waitUntil(lambda: p.duration_ms > 0, timeout=5000)
    yield p
    p.close()


def test_waveform_has_peaks_where_the_sine_is(audio):
    assert audio.duration_ms == 1000
    mins, maxs = audio.wave.column_peaks()
    cols = audio.wave.width()
    assert mins.size == maxs.size == cols > 0
    quiet, loud = slice(0, cols // 2 - 2), slice(cols // 2 + 2, cols)
    assert np.abs(maxs[quiet]).max() < 0.01 and np.abs(mins[quiet]).max() < 0.01
    assert np.all(maxs[loud] > 0.45) and np.all(mins[loud] < -0.45) and maxs.max() <= 0.51
    image = audio.wave.grab().toImage()
    y = audio.wave.height() * 3 // 8  # a quarter of full scale above the midline: drawn only where the sine is
    background = audio.wave.palette().base().color()
    drawn = [x for x in range(3, cols) if image.pixelColor(x, y) != background]  # x < 3: the playhead
    assert drawn and min(drawn) >= cols // 2 - 2


def test_click_on_the_waveform_seeks(qtbot, audio):
    x = round(0.75 * (audio.wave.width() - 1))
    qtbot.mouseClick(audio.wave, Qt.MouseButton.LeftButton, pos=QPoint(x, 10))
    assert audio.position == pytest.approx(750, abs=3)  # one pixel column is 2.5 ms here
    assert audio.wave.playhead == pytest.approx(0.75, abs=0.003)
    assert "00:00.7" in audio.readout.text()


def test_no_audio_device_is_said_and_seeking_still_works(qtbot, audio):
    audio.play()
    assert not audio.playing
    assert audio.status.isVisibleTo(audio) and "No audio output" in audio.status.text()
    audio.seek(300)
    assert audio.position == 300
    audio.close()
    assert audio.duration_ms == 0 and audio.wave.peaks is None


def test_audio_file_that_is_not_audio_says_so(qtbot, tmp_path):
    p = AudioPlayer()
    qtbot.addWidget(p)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"nope")
    p.load(bad)
    qtbot.waitUntil(lambda: "Cannot read bad.wav" in p.status.text(), timeout=5000)
    p.seek(100)
    assert p.position == 0
