"""The video player: PyAV decodes in a worker thread into a bounded frame cache, Qt draws the frames on time."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import (
    QElapsedTimer,
    QRect,
    QSize,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import (
    QImage,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPaintEvent,
)
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from backlot.widgets.playback import (
    Bridge,
    clock_text,
    fit_rect,
    fixed_font_label,
    tool_button,
)

CACHE_BYTES = 300 * 1024 * 1024  # decoded RGB frames one VideoPlayer may hold


class _Decoder:
    """Decodes one clip in a worker thread into a frame cache bounded by ``budget`` bytes.

    Backlot's clips are short generated ones (2-10 s, at most 1024 px), so while all frames fit the budget
    (about 100 frames at 1024x1024, 1000 at 512x512) every frame is decoded once and kept: scrubbing, stepping
    and looping are then instant and the decoder idles after the first pass. Bigger clips keep a window of
    the budget's size starting at the wanted frame (in loop order); a frame outside it is reached by seeking
    to the keyframe before it and decoding forward.
    """

    def __init__(self, path: Path, bridge: Bridge, budget: int | None = None) -> None:
        self.path = path
        self.bridge = bridge
        self.budget = CACHE_BYTES if budget is None else budget
        self.count = 0
        self.window = 1  # frames the budget holds
        self._frames: dict[int, tuple[QImage, np.ndarray]] = {}  # the array is the QImage's pixel buffer
        self._target = 0
        self._waiting = -1  # frame_ready is sent for this frame only: one queued event, not one per frame
        self._stop = False
        self._cond = threading.Condition()
        self.thread = threading.Thread(target=self._run, name=f"decode {path.name}", daemon=True)
        self.thread.start()

    def get(self, index: int) -> QImage | None:
        """Frame ``index`` if decoded, else None."""
        with self._cond:
            held = self._frames.get(index)
        return held[0] if held else None

    def cached(self) -> int:
        """How many frames are held."""
        with self._cond:
            return len(self._frames)

    def fetch(self, index: int) -> QImage | None:
        """Frame ``index`` if decoded, else None and frame_ready is sent when it is; decoding goes on from it."""
        with self._cond:
            held = self._frames.get(index)
            self._target = index
            self._waiting = -1 if held else index
            self._cond.notify()
        return held[0] if held else None

    def stop(self, wait: bool = True) -> None:
        """End the thread (waiting for it with ``wait``) and drop the frames."""
        with self._cond:
            self._stop = True
            self._cond.notify()
        if wait and self.thread is not threading.current_thread():
            self.thread.join(timeout=2)
        with self._cond:
            self._frames.clear()

    def _in_window(self, index: int) -> bool:
        return (index - self._target) % self.count < self.window

    def _next_wanted(self) -> int | None:
        for d in range(min(self.window, self.count)):
            index = (self._target + d) % self.count
            if index not in self._frames:
                return index
        return None

    def _run(self) -> None:
        try:
            self._decode()
        except Exception as exc:  # noqa: BLE001 - a broken file must not kill the app, only say why
            self.bridge.send("failed", self, f"Cannot play {self.path.name}: {exc}")
        finally:
            with self._cond:
                self._frames.clear()  # a frame stored after a stop(wait=False)

    def _decode(self) -> None:
        import av  # about 100 ms to import: paid here, off the GUI thread

        with av.open(str(self.path)) as container:
            if not container.streams.video:
                self.bridge.send("failed", self, f"{self.path.name} has no video")
                return
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 24)
            tb = stream.time_base
            if tb is None:
                raise ValueError("the video stream has no time base")
            start = stream.start_time or 0
            count = stream.frames
            if not count:  # some containers (WebM) do not say: estimate, corrected at the end of the stream
                seconds = float(stream.duration * tb) if stream.duration else (container.duration or 0) / 1e6
                count = round(seconds * fps)
            width, height = stream.codec_context.width, stream.codec_context.height
            with self._cond:
                self.count = max(1, count)
                self.window = max(2, self.budget // max(1, width * height * 3))
            self.bridge.send("opened", self, {"frame_count": self.count, "fps": fps, "width": width, "height": height})
            frames = None  # the decode iterator; None: seek before decoding
            cursor = -1  # the next frame index to store from it
            while True:
                wanted: int | None = None
                with self._cond:
                    while not self._stop and (wanted := self._next_wanted()) is None:
                        self._cond.wait()
                    if self._stop or wanted is None:
                        return
                if frames is None or wanted != cursor:
                    container.seek(start + int(wanted / fps / tb), stream=stream, backward=True)
                    frames, cursor = container.decode(stream), wanted
                try:
                    frame = next(frames, None)
                except av.FFmpegError:
                    frame = None
                if frame is None:  # end of the stream: the frames from cursor on do not exist
                    if cursor == 0:
                        raise ValueError("no picture decodes")
                    with self._cond:
                        fix = cursor < self.count
                        if fix:
                            self.count = cursor
                            self._target %= cursor
                            self._frames = {k: v for k, v in self._frames.items() if k < cursor}
                            waiting, self._waiting = self._waiting, -1
                    if fix:
                        self.bridge.send("count_changed", self, cursor)
                        if waiting >= cursor:
                            self.bridge.send("frame_ready", self, cursor - 1)
                    frames = None
                    continue
                index = cursor if frame.pts is None else round((frame.pts - start) * tb * fps)
                if index < cursor:  # before the wanted frame, after a seek to its keyframe
                    continue
                with self._cond:
                    keep = [k for k in range(cursor, index + 1) if k >= self.count or self._in_window(k)]
                if keep:
                    rgb = np.ascontiguousarray(frame.to_ndarray(format="rgb24"))
                    image = QImage(rgb.data, rgb.shape[1], rgb.shape[0], rgb.strides[0], QImage.Format.Format_RGB888)
                    with self._cond:
                        grew = index >= self.count
                        if grew:
                            self.count = index + 1
                        for k in keep:  # a gap in the timestamps shows the next frame
                            self._frames[k] = (image, rgb)
                        if len(self._frames) > self.window:
                            self._frames = {k: v for k, v in self._frames.items() if self._in_window(k)}
                        ready = cursor <= self._waiting <= index
                        if ready:
                            waiting, self._waiting = self._waiting, -1
                    if grew:
                        self.bridge.send("count_changed", self, index + 1)
                    if ready:
                        self.bridge.send("frame_ready", self, waiting)
                cursor = index + 1


class _Picture(QWidget):
    """Draws the current frame fitted into the widget, keeping its aspect ratio, on black."""

    clicked = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.image: QImage | None = None
        self.smooth = True
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(64, 36)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)

    def target(self) -> QRect:
        """Where the picture is drawn, in this widget's coordinates."""
        return fit_rect(self.image.size(), self.rect()) if self.image is not None else QRect()

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), Qt.GlobalColor.black)
        if self.image is not None:
            # smooth scaling of a large frame costs milliseconds per paint: only while paused
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, self.smooth)
            painter.drawImage(self.target(), self.image)

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self.clicked.emit()


class VideoPlayer(QWidget):
    """Plays a video file: play/pause (Space), scrub, frame step (arrows), loop; the picture fitted to the widget."""

    position_changed = Signal(int)  # frame index

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self._bridge = Bridge()  # no parent: see Bridge
        self._bridge.opened.connect(self._on_opened)
        self._bridge.frame_ready.connect(self._on_frame_ready)
        self._bridge.count_changed.connect(self._on_count_changed)
        self._bridge.failed.connect(self._on_failed)
        self._decoder: _Decoder | None = None
        live: list[_Decoder | None] = [None]  # the slot below must not hold self: the wrapper is gone by then
        self._live = live

        def stop_decoder(*_: Any) -> None:
            if live[0] is not None:
                live[0].stop(wait=False)

        self.destroyed.connect(stop_decoder)
        self._count = 0
        self._fps = 0.0
        self._position = 0
        self._awaited = -1  # the frame to show once the decoder has it
        self._playing = False
        self._resume_after_drag = False
        self._clock = QElapsedTimer()
        self._anchor = 0  # frame shown when the clock was (re)started
        self._timer = QTimer(self, timerType=Qt.TimerType.PreciseTimer)
        self._timer.timeout.connect(self._tick)

        self.picture = _Picture()
        self.picture.clicked.connect(self.toggle)
        self.play_button = tool_button("▶", "Play / pause (Space)")
        self.back_button = tool_button("◀|", "One frame back (Left)")
        self.forward_button = tool_button("|▶", "One frame forward (Right)")
        self.loop_button = tool_button("⟲", "Loop")
        self.loop_button.setCheckable(True)
        self.loop_button.setChecked(True)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.slider.setRange(0, 0)
        self.readout = fixed_font_label()
        self.status = QLabel()
        self.status.setObjectName("media-status")
        self.status.hide()
        self.play_button.clicked.connect(self.toggle)
        self.back_button.clicked.connect(lambda: self.step(-1))
        self.forward_button.clicked.connect(lambda: self.step(1))
        self.slider.valueChanged.connect(self._on_slider)
        self.slider.sliderPressed.connect(self._on_slider_pressed)
        self.slider.sliderReleased.connect(self._on_slider_released)
        bar = QHBoxLayout()
        bar.setContentsMargins(4, 2, 4, 2)
        for w in (self.play_button, self.back_button, self.forward_button):
            bar.addWidget(w)
        bar.addWidget(self.slider, 1)
        bar.addWidget(self.readout)
        bar.addWidget(self.loop_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.picture, 1)
        layout.addWidget(self.status)
        layout.addLayout(bar)
        self._update_readout()

    @property
    def frame_count(self) -> int:
        """Frames in the clip; 0 until it has opened."""
        return self._count

    @property
    def fps(self) -> float:
        """Frames per second; 0.0 until the clip has opened."""
        return self._fps

    @property
    def position(self) -> int:
        """The current frame index."""
        return self._position

    @property
    def playing(self) -> bool:
        """Whether playback runs (or will, once the clip has opened)."""
        return self._playing

    @property
    def loop(self) -> bool:
        """Whether playback starts over at the end (on by default)."""
        return self.loop_button.isChecked()

    @loop.setter
    def loop(self, on: bool) -> None:
        self.loop_button.setChecked(on)

    def load(self, path: Path) -> None:
        """Open a clip (decoding starts in the background) and show its first frame; playback is paused."""
        self._release(wait=False)
        self._set_status("Loading…")
        self._decoder = _Decoder(Path(path), self._bridge)
        self._live[0] = self._decoder

    def play(self) -> None:
        """Start playback (from the start when a clip without loop sits on its last frame)."""
        if self._count and not self.loop and self._position >= self._count - 1:
            self.seek(0)
        self._set_playing(True)

    def pause(self) -> None:
        """Stop playback on the current frame."""
        self._set_playing(False)

    def toggle(self) -> None:
        """Play if paused, pause if playing."""
        self.pause() if self._playing else self.play()

    def seek(self, frame: int) -> None:
        """Show ``frame`` (clamped to the clip); playback, if on, goes on from there."""
        if not self._count:
            return
        self._go(max(0, min(self._count - 1, frame)))
        self._restart_clock()

    def step(self, n: int) -> None:
        """Pause and move ``n`` frames (negative: back)."""
        self.pause()
        self.seek(self._position + n)

    def close(self) -> bool:
        """Stop playback and free the decoder and its frames; the widget stays, ready for another ``load``."""
        self._release()
        return True

    def picture_rect(self) -> QRect:
        """Where the frame is drawn, in this widget's coordinates (empty before the first frame)."""
        rect = self.picture.target()
        return rect.translated(self.picture.pos()) if not rect.isEmpty() else rect

    def sizeHint(self) -> QSize:
        return QSize(480, 320)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
        if key == Qt.Key.Key_Space:
            self.toggle()
        elif key in (Qt.Key.Key_Left, Qt.Key.Key_Right):
            self.step(-1 if key == Qt.Key.Key_Left else 1)
        else:
            super().keyPressEvent(event)

    def closeEvent(self, event: Any) -> None:
        self._release()
        super().closeEvent(event)

    def _release(self, wait: bool = True) -> None:
        self._timer.stop()
        self._playing = False
        if self._decoder is not None:
            self._decoder.stop(wait)  # load() does not wait: the old thread ends by itself after its frame
        self._decoder = self._live[0] = None
        self._count, self._fps, self._position, self._awaited = 0, 0.0, 0, -1
        self.picture.image = None
        self.picture.update()
        self.play_button.setText("▶")
        self._sync_slider()
        self._update_readout()
        self._set_status("")

    def _set_status(self, text: str) -> None:
        self.status.setText(text)
        self.status.setVisible(bool(text))

    def _set_playing(self, on: bool) -> None:
        self._playing = on
        self.play_button.setText("❚❚" if on else "▶")
        self.picture.smooth = not on
        if on and self._count:
            self._restart_clock()
            self._timer.start(max(1, int(500 / self._fps)))  # ticks at twice the frame rate, the clock picks frames
        else:
            self._timer.stop()
            self.picture.update()

    def _restart_clock(self) -> None:
        self._anchor = self._position
        self._clock.start()

    def _tick(self) -> None:
        if self._awaited >= 0 or self._decoder is None:
            return  # the frame due is still decoding: hold the picture, the clock restarts when it comes
        due = self._anchor + int(self._clock.elapsed() * self._fps / 1000)
        if due >= self._count:
            if not self.loop:
                self._go(self._count - 1)
                self.pause()
                return
            self._anchor -= self._count * (due // self._count)
            due %= self._count
        if due != self._position:
            self._go(due)

    def _go(self, index: int) -> None:
        """Make ``index`` the position and show it, or wait for the decoder to bring it."""
        if self._decoder is None:
            return
        image = self._decoder.fetch(index)
        self._awaited = -1 if image is not None else index
        if image is not None:
            self.picture.image = image
            self.picture.update()
        if index != self._position:
            self._position = index
            self._sync_slider()
            self._update_readout()
            self.position_changed.emit(index)

    def _on_opened(self, decoder: _Decoder, info: dict[str, Any]) -> None:
        if decoder is not self._decoder:
            return
        self._count, self._fps = info["frame_count"], info["fps"]
        self._set_status("")
        self._sync_slider()
        self._update_readout()
        self._go(0)
        if self._playing:
            self._set_playing(True)

    def _on_frame_ready(self, decoder: _Decoder, index: int) -> None:
        if decoder is not self._decoder or index != self._awaited:
            return
        self._go(index)
        self._restart_clock()

    def _on_count_changed(self, decoder: _Decoder, count: int) -> None:
        if decoder is not self._decoder:
            return
        self._count = count
        if self._position >= count:
            self._go(count - 1)
        self._sync_slider()
        self._update_readout()

    def _on_failed(self, decoder: _Decoder, message: str) -> None:
        if decoder is not self._decoder:
            return
        self._release()
        self._set_status(message)

    def _sync_slider(self) -> None:
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(0, self._count - 1))
        self.slider.setValue(self._position)
        self.slider.blockSignals(False)

    def _update_readout(self) -> None:
        fps = self._fps or 1.0
        digits = len(str(max(self._count, 1)))
        self.readout.setText(f"{clock_text(self._position / fps)} / {clock_text(self._count / fps)}"
                             f"  {self._position + 1 if self._count else 0:>{digits}}/{self._count}")

    def _on_slider(self, value: int) -> None:
        self.seek(value)

    def _on_slider_pressed(self) -> None:
        self._resume_after_drag = self._playing
        self.pause()

    def _on_slider_released(self) -> None:
        if self._resume_after_drag:
            self.play()
