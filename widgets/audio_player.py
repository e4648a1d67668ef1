"""The audio player: a waveform computed off the GUI thread, with a playhead; QtMultimedia plays the sound."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import (
    QLineF,
    QSize,
    Qt,
    QTimer,
    QUrl,
    Signal,
)
from PySide6.QtGui import (
    QColor,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QPen,
)
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from backlot.widgets.playback import Bridge, clock_text, fixed_font_label, tool_button

WAVE_BUCKETS = 4096  # min/max pairs computed per audio file (more than any screen has pixel columns)


def _audio_outputs() -> list[Any]:
    """The system's audio outputs (a function so that tests can take them away)."""
    from PySide6.QtMultimedia import QMediaDevices

    return list(QMediaDevices.audioOutputs())


def waveform_peaks(path: Path, buckets: int = WAVE_BUCKETS) -> tuple[np.ndarray, np.ndarray, float]:
    """(mins, maxs, duration in ms) of an audio file mixed down to mono, in at most ``buckets`` min/max pairs."""
    import av

    chunks: list[np.ndarray] = []
    rate = 0
    with av.open(str(path)) as container:
        if not container.streams.audio:
            raise ValueError("no audio stream")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono")
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                rate = out.sample_rate
                chunks.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    if not samples.size or not rate:
        raise ValueError("no samples")
    edges = np.linspace(0, samples.size, min(buckets, samples.size) + 1).astype(np.int64)[:-1]
    return np.minimum.reduceat(samples, edges), np.maximum.reduceat(samples, edges), samples.size / rate * 1000


def fit_peaks(mins: np.ndarray, maxs: np.ndarray, columns: int) -> tuple[np.ndarray, np.ndarray]:
    """The min/max pairs merged (or repeated) to one pair per pixel column."""
    if columns <= 0 or not mins.size:
        return np.zeros(0), np.zeros(0)
    if mins.size >= columns:
        edges = np.linspace(0, mins.size, columns + 1).astype(np.int64)[:-1]
        return np.minimum.reduceat(mins, edges), np.maximum.reduceat(maxs, edges)
    pick = np.arange(columns) * mins.size // columns
    return mins[pick], maxs[pick]


class _Waveform(QWidget):
    """The waveform, min/max per pixel column, with a playhead; a click asks to seek there."""

    seek_requested = Signal(float)  # fraction of the duration

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.peaks: tuple[np.ndarray, np.ndarray] | None = None
        self.playhead = 0.0  # fraction
        self._fitted: tuple[int, list[QLineF]] = (-1, [])
        self.setMinimumSize(120, 48)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setCursor(Qt.CursorShape.PointingHandCursor)

    def set_peaks(self, peaks: tuple[np.ndarray, np.ndarray] | None) -> None:
        """New bucketed peaks (None: nothing to draw)."""
        self.peaks = peaks
        self._fitted = (-1, [])
        self.update()

    def column_peaks(self) -> tuple[np.ndarray, np.ndarray]:
        """One (min, max) per pixel column at the current width."""
        return fit_peaks(*self.peaks, self.width()) if self.peaks else (np.zeros(0), np.zeros(0))

    def _lines(self) -> list[QLineF]:
        # the file was reduced to WAVE_BUCKETS pairs off the GUI thread; fitting those to the pixel columns
        # is one numpy step over 4096 values, redone only when the width changes
        if self._fitted[0] != self.width():
            mins, maxs = self.column_peaks()
            mid, half = self.height() / 2, self.height() / 2 - 1
            self._fitted = (self.width(), [QLineF(x + 0.5, mid - hi * half, x + 0.5, mid - lo * half)
                                           for x, (lo, hi) in enumerate(zip(mins.tolist(), maxs.tolist()))])
        return self._fitted[1]

    def resizeEvent(self, event: Any) -> None:
        self._fitted = (-1, [])
        super().resizeEvent(event)

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), self.palette().base())
        painter.setPen(QPen(self.palette().highlight().color(), 1))
        painter.drawLines(self._lines())
        if self.peaks is not None:
            x = round(self.playhead * (self.width() - 1))
            painter.setPen(QPen(QColor(220, 60, 60), 2))
            painter.drawLine(x, 0, x, self.height())

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton and self.width() > 1:
            self.seek_requested.emit(min(1.0, max(0.0, event.position().x() / (self.width() - 1))))


class AudioPlayer(QWidget):
    """Plays an audio file (QtMultimedia) over its waveform; a click on the waveform seeks."""

    position_changed = Signal(int)  # ms

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self._bridge = Bridge()  # no parent: see Bridge
        self._bridge.waveform.connect(self._on_waveform)
        self._bridge.failed.connect(self._on_failed)
        self._path: Path | None = None
        self._token: object | None = None  # the waveform job in flight; results of older ones are dropped
        self._duration = 0.0
        self._position = 0
        self._player: Any = None  # QMediaPlayer, made on first play (QtMultimedia is slow to load)
        self._output: Any = None
        self._ticker = QTimer(self, interval=30)  # QMediaPlayer.positionChanged is too coarse for a smooth playhead
        self._ticker.timeout.connect(self._follow)
        self.wave = _Waveform()
        self.wave.seek_requested.connect(lambda f: self.seek(round(f * self._duration)))
        self.play_button = tool_button("▶", "Play / pause (Space)")
        self.play_button.clicked.connect(self.toggle)
        self.readout = fixed_font_label()
        self.status = QLabel(wordWrap=True)
        self.status.setObjectName("media-status")
        self.status.hide()
        bar = QHBoxLayout()
        bar.setContentsMargins(4, 2, 4, 2)
        bar.addWidget(self.play_button)
        bar.addWidget(self.readout)
        bar.addWidget(self.status, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.wave, 1)
        layout.addLayout(bar)
        self._update_readout()

    @property
    def duration_ms(self) -> int:
        """The file's length in ms; 0 until its waveform is computed."""
        return round(self._duration)

    @property
    def position(self) -> int:
        """The playhead, in ms."""
        return self._position

    @property
    def playing(self) -> bool:
        """Whether sound plays."""
        return self._player is not None and self._ticker.isActive()

    def load(self, path: Path) -> None:
        """Open an audio file: its waveform is computed in the background; playback is paused."""
        self.close()
        self._path = Path(path)
        token = self._token = object()
        bridge = self._bridge
        threading.Thread(target=self._compute, args=(self._path, bridge, token), daemon=True,
                         name=f"waveform {self._path.name}").start()

    @staticmethod
    def _compute(path: Path, bridge: Bridge, token: object) -> None:
        try:
            bridge.send("waveform", token, waveform_peaks(path))
        except Exception as exc:  # noqa: BLE001 - a broken file must not kill the app, only say why
            bridge.send("failed", token, f"Cannot read {path.name}: {exc}")

    def play(self) -> None:
        """Play from the playhead; says so in the status line when there is no audio output."""
        if self._path is None or not self._ensure_player():
            return
        self._player.play()
        self._ticker.start()
        self.play_button.setText("❚❚")

    def pause(self) -> None:
        """Pause the sound."""
        if self._player is not None:
            self._player.pause()
        self._stopped()

    def toggle(self) -> None:
        """Play if paused, pause if playing."""
        self.pause() if self.playing else self.play()

    def seek(self, ms: int) -> None:
        """Move the playhead (and the sound, if any) to ``ms``."""
        self._set_position(max(0, min(round(self._duration), ms)) if self._duration else 0)
        if self._player is not None:
            self._player.setPosition(self._position)

    def close(self) -> bool:
        """Stop the sound and drop the file, its waveform and the media player; the widget stays."""
        self._ticker.stop()
        if self._player is not None:
            self._player.stop()
            self._player.setSource(QUrl())
            self._player.deleteLater()
            self._output.deleteLater()
        self._player = self._output = self._path = self._token = None
        self._duration, self._position = 0.0, 0
        self.wave.set_peaks(None)
        self.wave.playhead = 0.0
        self.play_button.setText("▶")
        self._set_status("")
        self._update_readout()
        return True

    def sizeHint(self) -> QSize:
        return QSize(480, 120)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Space:
            self.toggle()
        else:
            super().keyPressEvent(event)

    def closeEvent(self, event: Any) -> None:
        self.close()
        super().closeEvent(event)

    def _ensure_player(self) -> bool:
        if self._player is not None:
            return True
        if not _audio_outputs():
            self._set_status("No audio output device: sound is off (the waveform and seeking still work).")
            return False
        from PySide6.QtMultimedia import QAudioOutput, QMediaPlayer

        self._output = QAudioOutput(self)
        self._player = QMediaPlayer(self)
        self._player.setAudioOutput(self._output)
        self._player.errorOccurred.connect(self._on_player_error)
        self._player.mediaStatusChanged.connect(self._on_media_status)
        self._player.setSource(QUrl.fromLocalFile(str(self._path)))
        self._player.setPosition(self._position)
        return True

    def _follow(self) -> None:
        if self._player is not None:
            self._set_position(self._player.position())

    def _stopped(self) -> None:
        self._ticker.stop()
        self.play_button.setText("▶")

    def _on_media_status(self, status: Any) -> None:
        from PySide6.QtMultimedia import QMediaPlayer

        if status == QMediaPlayer.MediaStatus.EndOfMedia:
            self._stopped()
            self._set_position(round(self._duration))

    def _on_player_error(self, error: Any, message: str) -> None:
        self._stopped()
        self._set_status(f"Cannot play the sound: {message or error}")

    def _on_waveform(self, token: object, result: tuple[np.ndarray, np.ndarray, float]) -> None:
        if token is not self._token:
            return
        mins, maxs, self._duration = result
        self.wave.set_peaks((mins, maxs))
        self._update_readout()

    def _on_failed(self, token: object, message: str) -> None:
        if token is self._token:
            self._set_status(message)

    def _set_position(self, ms: int) -> None:
        if ms == self._position:
            return
        self._position = ms
        self.wave.playhead = ms / self._duration if self._duration else 0.0
        self.wave.update()
        self._update_readout()
        self.position_changed.emit(ms)

    def _set_status(self, text: str) -> None:
        self.status.setText(text)
        self.status.setVisible(bool(text))

    def _update_readout(self) -> None:
        self.readout.setText(f"{clock_text(self._position / 1000)} / {clock_text(self._duration / 1000)}")
