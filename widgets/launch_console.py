"""LaunchConsole: what a backend Backlot launched prints, live, on the Services page.

A view: the app layer hands it the lines the core keeps (``launch_console``) when an entry is chosen and the new
ones as they arrive (``LaunchOutput``). It keeps at most the core's ring of lines (``console_lines``). Follow keeps
the end in view; the search field highlights every match and jumps between them; Copy copies the selection, or
everything shown.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QColor, QGuiApplication, QTextCharFormat, QTextCursor, QTextDocument
from PySide6.QtWidgets import (QHBoxLayout, QLabel, QLineEdit, QPlainTextEdit, QTextEdit, QToolButton, QVBoxLayout,
                               QWidget)

from backlot.widgets.style import look, mono_font

EMPTY_TEXT = ("Choose a backend Backlot starts (click its card, or its Console button) to see what it prints. "
              "Add one in Settings → Backends Backlot starts.")
MAX_HIGHLIGHTS = 2000  # matches marked at once: enough to see where they are, never a slow repaint


class Line(Protocol):
    """A console line as the core numbers it (``services.launch.console.ConsoleLine``)."""

    n: int
    text: str


class LaunchConsole(QWidget):
    """One launched backend's console: a bounded, read-only text view with Follow, search and Copy."""

    copied = Signal(int)  # lines put on the clipboard

    def __init__(self, limit: int = 2000, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("launchConsole")
        self.name = ""
        self.last_n = 0  # the number of the last line shown (lines arrive numbered; a repeat is dropped)
        self.title = QLabel("Console", objectName="consoleTitle")
        self.title.setStyleSheet("font-weight: 600;")
        self.state = QLabel(objectName="consoleState")
        self.follow = QToolButton(objectName="follow", text="Follow", checkable=True, checked=True)
        self.follow.setToolTip("Keep the newest line in view")
        self.follow.setAutoRaise(True)
        self.follow.toggled.connect(self._on_follow)
        self.search = QLineEdit(objectName="consoleSearch", clearButtonEnabled=True)
        self.search.setPlaceholderText("Find (Enter: next)")
        self.search.setMaximumWidth(260)
        self.search.textChanged.connect(self._on_search_changed)
        self.search.returnPressed.connect(self.find_next)
        self.prev_button = QToolButton(objectName="findPrev", text="Prev", autoRaise=True)
        self.prev_button.setToolTip("The previous match")
        self.prev_button.clicked.connect(self.find_previous)
        self.next_button = QToolButton(objectName="findNext", text="Next", autoRaise=True)
        self.next_button.setToolTip("The next match (Enter in the field)")
        self.next_button.clicked.connect(self.find_next)
        self.matches = QLabel(objectName="matches")
        self.matches.setFont(mono_font(-1))
        self.copy_button = QToolButton(objectName="copy", text="Copy", autoRaise=True)
        self.copy_button.setToolTip("Copy the selected text, or the whole console when nothing is selected")
        self.copy_button.clicked.connect(self.copy)
        self.view = QPlainTextEdit(objectName="consoleText", readOnly=True)
        self.view.setFont(mono_font(-1))
        self.view.setPlaceholderText(EMPTY_TEXT)
        self.view.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        self.view.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse
                                          | Qt.TextInteractionFlag.TextSelectableByKeyboard)
        self.view.verticalScrollBar().actionTriggered.connect(self._on_scrolled_by_user)
        self.set_limit(limit)
        self._highlight_timer = QTimer(self, singleShot=True, interval=150)  # new lines re-mark the matches
        self._highlight_timer.timeout.connect(self._highlight)
        bar = QHBoxLayout()
        bar.setContentsMargins(4, 2, 4, 2)
        bar.setSpacing(8)
        bar.addWidget(self.title)
        bar.addWidget(self.state)
        bar.addStretch(1)
        for w in (self.search, self.prev_button, self.next_button, self.matches, self.follow, self.copy_button):
            bar.addWidget(w)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addLayout(bar)
        layout.addWidget(self.view, 1)
        self._update_buttons()

    # ----- fed by the app layer -----
    def set_limit(self, limit: int) -> None:
        """Keep at most ``limit`` lines (the core's ring: ``console_lines``)."""
        self.view.setMaximumBlockCount(max(1, limit))

    def show_entry(self, name: str, lines: Iterable[Line], state: str = "", title: str = "") -> None:
        """Show ``name``'s console: the lines the core keeps now (those after them arrive with ``_on_output``)."""
        self.name, self.last_n = name, 0
        self.view.clear()
        self.title.setText(f"Console · {title or name}" if name else "Console")
        self.set_state(state)
        self._append(lines)
        self._update_buttons()

    def set_state(self, state: str) -> None:
        """The shown entry's state, as on its card (symbol and word)."""
        if not state:
            self.state.setText("")
            return
        st = look(state)
        self.state.setText(f"{st.symbol} {st.word}")
        self.state.setStyleSheet(f"color: {st.color}; font-weight: 600;")

    def _on_output(self, name: str, lines: Iterable[Line]) -> None:
        """New lines on some entry's console: shown when it is the one on screen."""
        if name == self.name:
            self._append(lines)

    def _append(self, lines: Iterable[Line]) -> None:
        new = [line for line in lines if line.n > self.last_n]
        if not new:
            return
        fresh = [line.text for line in new]
        self.last_n = new[-1].n
        bar = self.view.verticalScrollBar()
        keep = bar.value()
        cursor = QTextCursor(self.view.document())
        cursor.movePosition(QTextCursor.MoveOperation.End)
        if not self.view.document().isEmpty():
            cursor.insertBlock()
        cursor.insertText("\n".join(fresh))
        if self.follow.isChecked():
            bar.setValue(bar.maximum())
        else:
            bar.setValue(min(keep, bar.maximum()))  # reading further up: the view stays where it is
        if self.search.text():
            self._highlight_timer.start()
        self._update_buttons()

    # ----- reading -----
    def text(self) -> str:
        """Everything shown."""
        return self.view.toPlainText()

    def line_count(self) -> int:
        """Lines shown (at most the limit)."""
        return 0 if self.view.document().isEmpty() else self.view.document().blockCount()

    def copy(self) -> None:
        """The selection, or the whole console, to the clipboard."""
        cursor = self.view.textCursor()
        text = cursor.selectedText().replace("\u2029", "\n") if cursor.hasSelection() else self.text()
        if not text:
            return
        QGuiApplication.clipboard().setText(text)
        count = text.count("\n") + 1
        self.matches.setText(f"copied {count} line{'s' if count != 1 else ''}")
        self.copied.emit(count)

    # ----- follow and search -----
    def _on_follow(self, on: bool) -> None:
        if on:
            bar = self.view.verticalScrollBar()
            bar.setValue(bar.maximum())

    def _on_scrolled_by_user(self, _action: int) -> None:
        """Scrolling up by hand stops following, so new lines do not pull the view away; back at the end, it
        follows again."""
        bar = self.view.verticalScrollBar()
        QTimer.singleShot(0, lambda: self.follow.setChecked(bar.value() >= bar.maximum()))

    def _on_search_changed(self, text: str) -> None:
        self._highlight()
        if text:
            self._find(backward=False, from_start=True)

    def find_next(self) -> bool:
        """Select the next match after the cursor (wrapping round); False when there is none."""
        return self._find(backward=False)

    def find_previous(self) -> bool:
        """Select the previous match before the cursor (wrapping round)."""
        return self._find(backward=True)

    def _find(self, backward: bool, from_start: bool = False) -> bool:
        needle = self.search.text()
        if not needle:
            return False
        doc = self.view.document()
        flags = QTextDocument.FindFlag.FindBackward if backward else QTextDocument.FindFlag(0)
        start = QTextCursor(doc) if from_start else self.view.textCursor()
        found = doc.find(needle, start, flags)
        if found.isNull():  # wrap round
            edge = QTextCursor(doc)
            if backward:
                edge.movePosition(QTextCursor.MoveOperation.End)
            found = doc.find(needle, edge, flags)
        if found.isNull():
            return False
        self.follow.setChecked(False)  # a match in view stays in view while new lines arrive
        self.view.setTextCursor(found)
        self.view.ensureCursorVisible()
        return True

    def _highlight(self) -> None:
        needle = self.search.text()
        marks: list[QTextEdit.ExtraSelection] = []
        doc = self.view.document()
        fmt = QTextCharFormat()
        fmt.setBackground(QColor("#f2d45c"))
        fmt.setForeground(QColor("#000000"))
        cursor = QTextCursor(doc)
        while needle and len(marks) < MAX_HIGHLIGHTS:
            cursor = doc.find(needle, cursor)
            if cursor.isNull():
                break
            mark = QTextEdit.ExtraSelection()
            mark.cursor, mark.format = cursor, fmt  # type: ignore[misc]
            marks.append(mark)
        self.view.setExtraSelections(marks)
        if needle:
            count = f"{len(marks)}+" if len(marks) >= MAX_HIGHLIGHTS else str(len(marks))
            self.matches.setText(f"{count} match{'es' if len(marks) != 1 else ''}")
        else:
            self.matches.setText("")
        self.search.setStyleSheet("" if not needle or marks else "color: #d33c3c;")

    def highlighted(self) -> int:
        """How many matches are marked."""
        return len(self.view.extraSelections())

    def _update_buttons(self) -> None:
        has = bool(self.name)
        for w in (self.search, self.prev_button, self.next_button, self.copy_button, self.follow):
            w.setEnabled(has)
