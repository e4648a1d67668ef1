"""The socket API's status for the toolbar: address, connected clients, and a button that copies the token.

The token itself is never shown: the controller puts it on the clipboard and this panel only says it did.
"""
from __future__ import annotations

from PySide6.QtCore import QTimer, Signal, Slot
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QWidget

from backlot.widgets.job_states import GREEN, GREY, RED


class ApiPanel(QWidget):
    """``API ● 127.0.0.1:8770 · 1 client [Copy token]``; fed by ``_on_status``."""

    copy_token_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = QLabel(objectName="api-state")
        self.address = QLabel(objectName="api-address")
        self.clients = QLabel(objectName="api-clients")
        self.copy_button = QPushButton("Copy token", objectName="copy-token")
        self.copy_button.setToolTip("Copy the API token to the clipboard for the Blender addon or a script")
        self.note = QLabel(objectName="api-note")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("API"))
        for w in (self.state, self.address, self.clients, self.copy_button, self.note):
            layout.addWidget(w)
        self.copy_button.clicked.connect(self.copy_token_requested)
        self._clear_note = QTimer(self, singleShot=True, interval=4000)
        self._clear_note.timeout.connect(self.note.clear)
        self._on_starting()

    @Slot()
    def _on_starting(self) -> None:
        """The core is starting: the API is not up yet, but it is not refused either."""
        self.state.setText(f'<span style="color:{GREY}">◔</span> starting')
        self.address.setText("")
        self.clients.setText("")
        self.copy_button.setEnabled(False)

    @Slot(str, int, int, bool)
    def _on_status(self, host: str, port: int, clients: int, serving: bool) -> None:
        """Where the API listens and how many clients are connected; ``serving`` False: it is not running."""
        if serving:
            self.state.setText(f'<span style="color:{GREEN}">●</span> serving')
            self.address.setText(f"{host}:{port}")
            self.clients.setText(f"· {clients} client{'' if clients == 1 else 's'}")
        else:
            self.state.setText(f'<span style="color:{GREY}">◌</span> not serving')
            self.address.setText("")
            self.clients.setText("")
        self.copy_button.setEnabled(serving)

    @Slot()
    def _on_token_copied(self) -> None:
        """The token is on the clipboard."""
        self.note.setText("token copied")
        self._clear_note.start()

    @Slot(str)
    def _on_token_failed(self, message: str) -> None:
        """The token could not be read (one sentence naming the file, never the token)."""
        self.note.setText(f'<span style="color:{RED}">○</span> {message}')
        self._clear_note.start()
