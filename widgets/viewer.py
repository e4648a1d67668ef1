"""The output viewer: one job's result as large as the space allows, or two side by side to compare.

An image is fitted to the space (or shown 1:1 in a scroll area), text is readable and selectable, a running job
shows its live preview. Video and audio play in ``widgets.media``'s players (they decode off the GUI thread).
←/→ ask for the previous/next output (``step_requested``) when the viewer or its picture has the focus; a video
player with the focus keeps them for its frame step.
The viewer reads no image file itself: it asks with ``load_requested`` and is answered by the app layer.
"""
from __future__ import annotations

from pathlib import PurePath
from typing import Any

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import (
    QGuiApplication,
    QImage,
    QKeyEvent,
    QKeySequence,
    QMouseEvent,
    QPixmap,
    QResizeEvent,
    QShortcut,
)
from PySide6.QtWidgets import (
    QApplication,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from backlot.services.application.views import NO_BLENDER
from backlot.services.models import Job, JobState
from backlot.services.tasks import SCHEMA
from backlot.widgets.preview import pick_output

SEND_TO_BLENDER_TIP = "Place this file at the playhead of Blender's Video Sequencer ({n} addon{s} connected)"


def info_line(job: Job) -> str:
    """``#14 text→image · comfyui@gpu-box · 12.4 s · seed 8812`` (the parts known)."""
    parts = [f"#{job.seq} {job.task.replace('_to_', '→').replace('_', ' ')}"]
    if job.routed_to:
        parts.append(job.routed_to)
    if job.started_at is not None and job.finished_at is not None:
        parts.append(f"{float(job.finished_at) - float(job.started_at):.1f} s")
    elif job.state is JobState.RUNNING:
        parts.append(f"{job.status.fraction * 100:.0f}%" if job.status.fraction is not None else "running")
    seed = job.params.get("seed")
    if seed is not None:
        parts.append(f"seed {seed}")
    if job.state not in (JobState.RUNNING, JobState.SUCCEEDED):
        parts.append(job.state.value)
    return " · ".join(parts)


def takes_new_seed(job: Job) -> bool:
    """True when a seed of -1 means "a new one" for this job: it names a seed, or its task's seed defaults to -1."""
    if "seed" in job.params:
        return True
    spec = SCHEMA.get(job.task)
    seed = spec.param("seed") if spec is not None else None
    return seed is not None and seed.default == -1


def fitted(image: QPixmap, width: int, height: int) -> QPixmap:
    """``image`` scaled to fit ``width`` × ``height`` (never up past 2×, kept as it is when already fitting)."""
    if image.isNull() or width < 2 or height < 2:
        return image
    return image.scaled(width, height, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)


class ImagePane(QScrollArea):
    """One image: fitted to the pane, or 1:1 with scroll bars."""

    def __init__(self, name: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName(name)
        self.setFrameShape(QScrollArea.Shape.NoFrame)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.label = QLabel(alignment=Qt.AlignmentFlag.AlignCenter, objectName=f"{name}-image")
        self.label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.setWidget(self.label)
        self.setWidgetResizable(True)
        self.image = QPixmap()
        self.one_to_one = False

    def set_image(self, image: QPixmap) -> None:
        """Show this image (as the mode says)."""
        self.image = image
        self.refit()

    def set_one_to_one(self, on: bool) -> None:
        """1:1 (scroll bars where it is bigger than the pane) or fitted."""
        self.one_to_one = on
        self.refit()

    def refit(self) -> None:
        """Scale the image to the pane's size now."""
        if self.image.isNull():
            self.label.clear()
            return
        if self.one_to_one:
            self.setWidgetResizable(False)
            self.label.setPixmap(self.image)
            self.label.resize(self.image.size())
        else:
            self.setWidgetResizable(True)
            size = self.viewport().size()
            self.label.setPixmap(fitted(self.image, size.width(), size.height()))

    def shown_size(self) -> tuple[int, int]:
        """Width and height of the pixmap on screen (tests measure it)."""
        pix = self.label.pixmap()
        return (0, 0) if pix is None or pix.isNull() else (pix.width(), pix.height())

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 - Qt's name
        """Refit to the new size."""
        super().resizeEvent(event)
        if not self.one_to_one:
            self.refit()

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 - Qt's name
        """←/→ scroll only an image wider than the pane; otherwise they go on to the viewer (previous/next output)."""
        if event.key() in (Qt.Key.Key_Left, Qt.Key.Key_Right) and self.horizontalScrollBar().maximum() == 0:
            event.ignore()
            return
        super().keyPressEvent(event)


class OutputViewer(QWidget):
    """Shows one job's result (or two, side by side); asks for file contents with ``load_requested``."""

    load_requested = Signal(str, str, str)  # job id, path, kind ("image", "text" or "preview")
    open_folder_requested = Signal(str)  # job id
    retry_requested = Signal(str)
    send_requested = Signal(str, str)  # job id, path of the file shown: place it in the connected Blender
    retry_new_seed_requested = Signal(str)  # job id: run it again with a new seed
    step_requested = Signal(int)  # -1: the previous output, +1: the next (←/→)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("viewer")
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)  # ←/→ step through the outputs
        self.job_id: str | None = None
        self.job: Job | None = None
        self.path: str | None = None  # the file shown
        self.kind: str | None = None  # what is shown: image, audio, video, text or None (a message)
        self.compare_id: str | None = None  # the second job while comparing
        self.compare_mode = "side"  # side by side, "a" or "b" alone
        self._key: tuple[Any, ...] = ()
        self._live = False
        self._live_seq = -1
        self.player: Any = None  # widgets.media's VideoPlayer or AudioPlayer, when that module is there
        self.blender_addons = 0  # Blender addons connected to the API that place what is sent
        self.message = QLabel("Generate something, or click an output in the gallery below.", wordWrap=True,
                              alignment=Qt.AlignmentFlag.AlignCenter, objectName="viewer-message")
        self.pane = ImagePane("viewer-pane")
        self.text = QPlainTextEdit(readOnly=True, objectName="viewer-text")
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse
                                          | Qt.TextInteractionFlag.TextSelectableByKeyboard)
        font = self.text.font()
        font.setPointSizeF(font.pointSizeF() * 1.15)
        self.text.setFont(font)
        self.media_holder = QWidget()
        self._media_layout = QVBoxLayout(self.media_holder)
        self._media_layout.setContentsMargins(0, 0, 0, 0)
        self.compare = QWidget(objectName="viewer-compare")
        self.pane_a, self.pane_b = ImagePane("compare-a"), ImagePane("compare-b")
        self.caption_a, self.caption_b = QLabel(objectName="compare-a-caption"), QLabel(objectName="compare-b-caption")
        row = QHBoxLayout(self.compare)
        row.setContentsMargins(0, 0, 0, 0)
        for pane, caption in ((self.pane_a, self.caption_a), (self.pane_b, self.caption_b)):
            col = QVBoxLayout()
            caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
            col.addWidget(caption)
            col.addWidget(pane, 1)
            row.addLayout(col, 1)
        self.stack = QStackedWidget()
        for w in (self.message, self.pane, self.text, self.media_holder, self.compare):
            self.stack.addWidget(w)
        self.fit_button = QToolButton(text="1:1", checkable=True, objectName="viewer-1to1")
        self.fit_button.setToolTip("Show the image at its own size (1:1); off: fitted to the space")
        self.fit_button.toggled.connect(self._on_one_to_one)
        self.ab_button = QToolButton(text="⇆ A | B", objectName="viewer-ab")
        self.ab_button.setToolTip("Comparing: side by side, then A alone, then B alone")
        self.ab_button.clicked.connect(self.toggle_ab)
        self.info = QLabel(objectName="viewer-info")
        # a long file name must not widen the column (it would squeeze the form): the label clips, its tooltip has all
        self.info.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.open_button = QPushButton("Open folder")
        self.copy_button = QPushButton("Copy path")
        self.retry_button = QPushButton("Retry")
        self.new_seed_button = QPushButton("Retry with new seed", objectName="viewer-new-seed")
        self.new_seed_button.setToolTip("Run this job again with a seed the backend picks afresh")
        self.blender_button = QPushButton("Send to Blender", objectName="viewer-send-to-blender")
        self.blender_button.setEnabled(False)
        self.blender_button.setToolTip(NO_BLENDER)
        self.blender_note = QLabel(objectName="viewer-blender-note")  # what the last send did
        bar = QHBoxLayout()
        bar.setContentsMargins(4, 0, 4, 0)
        bar.addWidget(self.info, 1)
        for w in (self.open_button, self.copy_button, self.retry_button, self.new_seed_button, self.blender_note,
                  self.blender_button,
                  self.ab_button, self.fit_button):
            bar.addWidget(w)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.stack, 1)
        layout.addLayout(bar)
        self.open_button.clicked.connect(lambda: self.job_id and self.open_folder_requested.emit(self.job_id))
        self.retry_button.clicked.connect(lambda: self.job_id and self.retry_requested.emit(self.job_id))
        self.new_seed_button.clicked.connect(lambda: self.job_id and self.retry_new_seed_requested.emit(self.job_id))
        self.copy_button.clicked.connect(self.copy_path)
        self.blender_button.clicked.connect(self.send_to_blender)
        QShortcut(QKeySequence(Qt.Key.Key_Space), self, self.play_pause,
                  context=Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self._show_message(self.message.text())
        self._update_buttons()

    # ----- what is shown -----
    def shown_size(self) -> tuple[int, int]:
        """The displayed image's pixmap size (0, 0 when no image shows)."""
        return self.pane.shown_size() if self.stack.currentWidget() is self.pane else (0, 0)

    @property
    def _image(self) -> QPixmap:  # the old preview's name, read by tests
        return self.pane.image

    def showing_live(self, job_id: str) -> bool:
        """True when ``job_id`` is the job shown and it is still running (its previews are wanted)."""
        return self._live and job_id == self.job_id and self.compare_id is None

    # ----- fed by the console and the controller -----
    @Slot(object)
    def _on_job(self, job: Job) -> None:
        """Show this job: its result when it has one, else its live preview, what it is doing or why it failed."""
        picked = pick_output(job)
        if job.id == self.job_id:
            self.job = job
            self._set_info()
        key = (job.id, job.state, picked)
        if key == self._key and self.compare_id is None:
            return  # progress ticks of the same job change nothing else here
        self._key, self.job_id, self.job, self.compare_id = key, job.id, job, None
        self._live, self._live_seq = picked is None and job.state is JobState.RUNNING, -1
        self.path = picked[1] if picked else None
        self.blender_note.setText("")
        self._set_info()
        self._close_player()
        self._update_buttons()
        if picked is None:
            error = (job.error.message if job.error is not None else "") or job.status.message
            self._show_message({"queued": "Waiting to start…",
                                "running": "Running… its live preview shows here, then the result.",
                                "succeeded": "This job finished without a file to show."}.get(
                job.state.value, f"No result: {error or job.state.value}."))
            if self._live and job.status.preview is not None:
                self.load_requested.emit(job.id, str(job.status.preview.path), "preview")
            return
        kind, path = picked
        if kind in ("image", "text"):
            self._show_message("Loading…")
            self.load_requested.emit(job.id, path, kind)
        else:
            self._play(kind, path)

    def compare_jobs(self, a: Job, b: Job) -> None:
        """Show two jobs' images side by side (A the one shown, B the one added)."""
        self._close_player()
        self._live = False
        self.job_id, self.job, self.compare_id, self.compare_mode = a.id, a, b.id, "side"
        self._key = ("compare", a.id, b.id)
        self.kind = "compare"
        self.caption_a.setText(f"A · {info_line(a)}")
        self.caption_b.setText(f"B · {info_line(b)}")
        self.info.setText(f"Comparing #{a.seq} (A) with #{b.seq} (B)")
        for pane in (self.pane_a, self.pane_b):
            pane.set_image(QPixmap())
            pane.show()
        self.stack.setCurrentWidget(self.compare)
        self._update_buttons()
        for job in (a, b):
            picked = pick_output(job)
            if picked is not None and picked[0] == "image":
                self.load_requested.emit(job.id, picked[1], "image")

    def toggle_ab(self) -> None:
        """Comparing: side by side → A alone → B alone → side by side."""
        if self.compare_id is None:
            return
        self.compare_mode = {"side": "a", "a": "b", "b": "side"}[self.compare_mode]
        self.pane_a.setVisible(self.compare_mode in ("side", "a"))
        self.caption_a.setVisible(self.compare_mode in ("side", "a"))
        self.pane_b.setVisible(self.compare_mode in ("side", "b"))
        self.caption_b.setVisible(self.compare_mode in ("side", "b"))
        self.ab_button.setText({"side": "⇆ A | B", "a": "⇆ A", "b": "⇆ B"}[self.compare_mode])

    @Slot(str, QImage)
    def _on_image(self, job_id: str, image: QImage) -> None:
        """An image asked for (loaded off the GUI thread by the app layer)."""
        if self.compare_id is not None and job_id in (self.job_id, self.compare_id):
            pane = self.pane_a if job_id == self.job_id else self.pane_b
            pane.set_image(QPixmap.fromImage(image))
            return
        if job_id != self.job_id:
            return
        if image.isNull():
            self._show_message("The image could not be read.")
            return
        self.kind = "image"
        self.stack.setCurrentWidget(self.pane)
        self.pane.set_image(QPixmap.fromImage(image))
        self._update_buttons()

    @Slot(str, QImage, int)
    def _on_live_image(self, job_id: str, image: QImage, seq: int) -> None:
        """A running job's latest preview (``seq`` orders them; 0: the one its status named)."""
        if not self.showing_live(job_id) or image.isNull() or seq < self._live_seq:
            return
        self._live_seq = seq
        self.kind = "image"
        self.stack.setCurrentWidget(self.pane)
        self.pane.set_image(QPixmap.fromImage(image))
        self._set_info()

    @Slot(str, str)
    def _on_text(self, job_id: str, text: str) -> None:
        """The text an LLM job wrote."""
        if job_id == self.job_id and self.compare_id is None:
            self.kind = "text"
            self.text.setPlainText(text)
            self.stack.setCurrentWidget(self.text)

    @Slot(str, str)
    def _on_load_failed(self, job_id: str, message: str) -> None:
        """The result file could not be read (one sentence)."""
        if job_id == self.job_id and self.compare_id is None:
            self._show_message(message)

    def _set_info(self) -> None:
        if self.job is None or self.compare_id is not None:
            return
        live = self._live and self.kind == "image"  # a running job's preview image is shown
        tail = " · live preview" if live else f" · {PurePath(self.path).name}" if self.path else ""
        self.info.setText(info_line(self.job) + tail)
        self.info.setToolTip(self.path or "")

    # ----- actions -----
    def copy_path(self) -> None:
        """Put the shown file's path on the clipboard."""
        if self.path:
            QGuiApplication.clipboard().setText(self.path)

    def send_to_blender(self) -> None:
        """Ask for the shown file to be placed in the connected Blender (answered by ``_on_blender_sent``)."""
        if self.job_id and self.path and self.compare_id is None:
            self.blender_note.setText("Sending to Blender…")
            self.send_requested.emit(self.job_id, self.path)

    @Slot(int)
    def set_blender_addons(self, count: int) -> None:
        """How many Blender addons are connected: the button is usable only with one or more."""
        if count != self.blender_addons:
            self.blender_addons = count
            self._update_buttons()

    @Slot(str)
    def _on_blender_sent(self, sentence: str) -> None:
        """What the send did: ``Sent to Blender (1 addon)``, or why nothing was sent."""
        self.blender_note.setText(sentence)
        self.blender_note.setToolTip(sentence)

    def play_pause(self) -> None:
        """Space: play or pause the video or audio shown."""
        player = self.player
        if player is None:
            return
        playing = bool(getattr(player, "playing", False))
        player.pause() if playing else player.play()

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 - Qt's name
        """←/→: the previous/next output (a focused video player takes them first, for its frame step)."""
        key = event.key()
        if key in (Qt.Key.Key_Left, Qt.Key.Key_Right) and not event.modifiers():
            inside = self._holds_focus()
            self.step_requested.emit(-1 if key == Qt.Key.Key_Left else 1)
            if inside and not self._holds_focus():
                self.setFocus()  # the focused part was replaced (an image by a player): keep stepping
            event.accept()
            return
        super().keyPressEvent(event)

    def _holds_focus(self) -> bool:
        focus = QApplication.focusWidget()
        return focus is not None and (focus is self or self.isAncestorOf(focus))

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt's name
        """A click on the viewer gives it the focus (for ←/→)."""
        self.setFocus()
        super().mousePressEvent(event)

    def _on_one_to_one(self, on: bool) -> None:
        for pane in (self.pane, self.pane_a, self.pane_b):
            pane.set_one_to_one(on)

    # ----- showing -----
    def _show_message(self, text: str) -> None:
        self.kind = None
        self.message.setText(text)
        self.stack.setCurrentWidget(self.message)

    def _update_buttons(self) -> None:
        has_job = self.job is not None
        self.open_button.setEnabled(has_job)
        self.copy_button.setEnabled(bool(self.path))
        ended = has_job and self.job is not None and self.job.state not in (JobState.QUEUED, JobState.RUNNING)
        self.retry_button.setEnabled(ended)
        self.new_seed_button.setEnabled(ended and self.job is not None and takes_new_seed(self.job))
        self.ab_button.setVisible(self.compare_id is not None)
        self.blender_button.setEnabled(bool(self.path) and self.compare_id is None and self.blender_addons > 0)
        n = self.blender_addons
        self.blender_button.setToolTip(SEND_TO_BLENDER_TIP.format(n=n, s="" if n == 1 else "s") if n else NO_BLENDER)

    def _play(self, kind: str, path: str) -> None:
        """Video or audio: a player from ``widgets.media`` (loaded on first playback: QtMultimedia is slow to set up)."""
        from pathlib import Path

        from backlot.widgets import media

        self.kind = kind
        player = media.VideoPlayer() if kind == "video" else media.AudioPlayer()
        self._media_layout.addWidget(player)
        self.player = player
        player.load(Path(path))
        self.stack.setCurrentWidget(self.media_holder)

    def _close_player(self) -> None:
        if self.player is not None:
            self.player.close()
            self._media_layout.removeWidget(self.player)
            self.player.deleteLater()
            self.player = None
