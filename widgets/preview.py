"""Result preview of one job: the image, audio or video played back (QtMultimedia), or the text an LLM wrote."""
from __future__ import annotations

from pathlib import PurePath
from typing import Any

from PySide6.QtCore import QSize, Qt, QUrl, Signal, Slot
from PySide6.QtGui import QImage, QPixmap, QResizeEvent
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from backlot.services.models import Job, JobState, OutputFile
from backlot.widgets.icons import icon

_KIND_BY_SUFFIX = {"png": "image", "jpg": "image", "jpeg": "image", "webp": "image", "gif": "image", "bmp": "image",
                   "wav": "audio", "mp3": "audio", "flac": "audio", "ogg": "audio", "m4a": "audio",
                   "mp4": "video", "webm": "video", "mov": "video", "mkv": "video", "txt": "text", "md": "text"}


def output_kind(output: OutputFile) -> str | None:
    """``image``, ``audio``, ``video`` or ``text`` for one of a job's outputs (by MIME type, else by suffix)."""
    head = output.mime.split("/", 1)[0]
    if head in ("image", "audio", "video", "text"):
        return head
    return _KIND_BY_SUFFIX.get(output.path.suffix.lower().lstrip("."))


def pick_output(job: Job) -> tuple[str, str] | None:
    """The output worth previewing, as (kind, path): video first, then image, audio, text."""
    found = {k: str(o.path) for o in reversed(job.outputs) if (k := output_kind(o))}
    return next(((k, found[k]) for k in ("video", "image", "audio", "text") if k in found), None)


class PreviewPanel(QWidget):
    """Shows a job's result; asks for file contents with ``load_requested`` (it reads no file itself)."""

    load_requested = Signal(str, str, str)  # job id, path, kind ("image", "text" or "preview")
    open_folder_requested = Signal(str)  # job id
    retry_requested = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.job_id: str | None = None
        self.kind: str | None = None  # what is shown: image, audio, video, text or None (a message)
        self._key: tuple[Any, ...] = ()
        self._live = False  # the job shown runs and has no result yet: its latent previews show here
        self._live_seq = -1
        self._image = QPixmap()
        self.player: Any = None  # QMediaPlayer, made on first playback (QtMultimedia is slow to load)
        self.caption = QLabel("PREVIEW", objectName="preview-caption")
        self.caption.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.open_button = QPushButton("Open folder")
        self.retry_button = QPushButton("Retry")
        self.play_button = QPushButton(icon("play"), "Play")
        self.message = QLabel("Select a job to see its result.", alignment=Qt.AlignmentFlag.AlignCenter, wordWrap=True)
        self.image_label = QLabel(alignment=Qt.AlignmentFlag.AlignCenter, objectName="preview-image")
        self.image_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.text = QPlainTextEdit(readOnly=True, objectName="preview-text")
        self.video_holder = QWidget()
        self._video_layout = QVBoxLayout(self.video_holder)
        self._video_layout.setContentsMargins(0, 0, 0, 0)
        self.stack = QStackedWidget()
        for w in (self.message, self.image_label, self.text, self.video_holder):
            self.stack.addWidget(w)
        bar = QHBoxLayout()
        bar.addWidget(self.caption, 1)
        for b in (self.play_button, self.open_button, self.retry_button):
            bar.addWidget(b)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(bar)
        layout.addWidget(self.stack, 1)
        self.open_button.clicked.connect(lambda: self.job_id and self.open_folder_requested.emit(self.job_id))
        self.retry_button.clicked.connect(lambda: self.job_id and self.retry_requested.emit(self.job_id))
        self.play_button.clicked.connect(self._on_play_clicked)
        self._show_message("Select a job to see its result.")
        for b in (self.open_button, self.retry_button):
            b.setEnabled(False)  # nothing to open or retry until a job is selected

    # ----- fed by the table and the controller -----
    @Slot(object)
    def _on_job(self, job: Job) -> None:
        """Show this job: its result when it has one, else what it is doing or why it failed."""
        picked = pick_output(job)
        key = (job.id, job.state, picked)
        if key == self._key:
            return  # progress ticks of the same job change nothing here
        self._key, self.job_id = key, job.id
        self._live, self._live_seq = picked is None and job.state is JobState.RUNNING, -1
        self.caption.setText(f"#{job.seq} {job.task}" + (f" — {PurePath(picked[1]).name}" if picked else ""))
        self.retry_button.setEnabled(job.state not in (JobState.QUEUED, JobState.RUNNING))
        self.open_button.setEnabled(True)
        self._stop()
        if picked is None:
            state = job.state.value
            error = (job.error.message if job.error is not None else "") or job.status.message
            self._show_message({"queued": "Waiting to start…", "running": "Running… the result shows here when it is done.",
                                "succeeded": "This job finished without a file to preview."}.get(
                state, f"No result: {error or state}."))
            latest = job.status.preview
            if self._live and latest is not None:
                self.load_requested.emit(self.job_id, str(latest.path), "preview")
            return
        kind, path = picked
        if kind in ("image", "text"):
            self._show_message("Loading…")
            self.load_requested.emit(self.job_id, path, kind)
        else:
            self._play(kind, path)

    @Slot(str, QImage)
    def _on_image(self, job_id: str, image: QImage) -> None:
        """The image of the job shown (loaded by the controller off the event loop)."""
        if job_id != self.job_id:
            return
        if image.isNull():
            self._show_message("The image could not be read.")
            return
        self._image = QPixmap.fromImage(image)
        self.kind = "image"
        self.stack.setCurrentWidget(self.image_label)
        self._fit_image()

    def showing_live(self, job_id: str) -> bool:
        """True when ``job_id`` is the job shown and it is still running (its previews are wanted)."""
        return self._live and job_id == self.job_id

    @Slot(str, QImage, int)
    def _on_live_image(self, job_id: str, image: QImage, seq: int) -> None:
        """A running job's latest preview (``seq`` orders them; 0: the one its status named)."""
        if not self.showing_live(job_id) or image.isNull() or seq < self._live_seq:
            return
        self._live_seq = seq
        self._image = QPixmap.fromImage(image)
        self.kind = "image"
        self.caption.setText(f"{self.caption.text().split(' — ')[0]} — live preview")
        self.stack.setCurrentWidget(self.image_label)
        self._fit_image()

    @Slot(str, str)
    def _on_text(self, job_id: str, text: str) -> None:
        """The text an LLM job wrote."""
        if job_id == self.job_id:
            self.kind = "text"
            self.text.setPlainText(text)
            self.stack.setCurrentWidget(self.text)

    @Slot(str, str)
    def _on_load_failed(self, job_id: str, message: str) -> None:
        """The result file could not be read (one sentence)."""
        if job_id == self.job_id:
            self._show_message(message)

    # ----- showing -----
    def _show_message(self, text: str) -> None:
        self.kind = None
        self.message.setText(text)
        self.stack.setCurrentWidget(self.message)
        self.play_button.setVisible(False)

    def _play(self, kind: str, path: str) -> None:
        from PySide6.QtMultimedia import QAudioOutput, QMediaPlayer
        from PySide6.QtMultimediaWidgets import QVideoWidget

        if self.player is None:
            self.player = QMediaPlayer(self)
            self.player.setAudioOutput(QAudioOutput(self.player))
            self.video = QVideoWidget(self.video_holder)
            self._video_layout.addWidget(self.video)
            self.player.setVideoOutput(self.video)
            self.player.playbackStateChanged.connect(self._on_playback_state)
        self.kind = kind
        self.video.setVisible(kind == "video")
        if kind == "audio":
            self.message.setText(f"♪ {PurePath(path).name}")
        self.stack.setCurrentWidget(self.video_holder if kind == "video" else self.message)
        self.player.setSource(QUrl.fromLocalFile(path))
        self.play_button.setVisible(True)
        self._show_playing(False)

    def _on_play_clicked(self) -> None:
        if self.player is None:
            return
        from PySide6.QtMultimedia import QMediaPlayer

        playing = self.player.playbackState() == QMediaPlayer.PlaybackState.PlayingState
        self.player.pause() if playing else self.player.play()

    def _on_playback_state(self, state: Any) -> None:
        from PySide6.QtMultimedia import QMediaPlayer

        self._show_playing(state == QMediaPlayer.PlaybackState.PlayingState)

    def _show_playing(self, playing: bool) -> None:
        """Pause while playing, else Play: an SVG icon and a word (a ⏸ glyph is an empty box in many fonts)."""
        self.play_button.setIcon(icon("pause" if playing else "play"))
        self.play_button.setText("Pause" if playing else "Play")

    def _stop(self) -> None:
        if self.player is not None:
            self.player.stop()
            self.player.setSource(QUrl())

    def _fit_image(self) -> None:
        if self._image.isNull():
            return
        size = self.image_label.size().boundedTo(self._image.size()) if self.image_label.width() > 1 else QSize(320, 240)
        self.image_label.setPixmap(self._image.scaled(size, Qt.AspectRatioMode.KeepAspectRatio,
                                                      Qt.TransformationMode.SmoothTransformation))

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 - Qt's name
        """Rescale the image to the new size."""
        super().resizeEvent(event)
        if self.kind == "image":
            self._fit_image()
