"""The settings dialog: hosts, ports, URLs, intervals, API, output folder, LLM keys (masked, never shown) and the
backends Backlot starts.

It edits plain values and emits only what changed; the controller writes ``config.toml`` and checks keys.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QDoubleSpinBox, QFileDialog, QFormLayout, QGridLayout,
                               QHBoxLayout, QLabel, QLineEdit, QPushButton, QSpinBox, QTabWidget, QVBoxLayout, QWidget)

from backlot.widgets.launch_settings import LaunchEntriesEditor
from backlot.widgets.param_fields import INVALID_STYLE, mark_invalid

# name -> (label, min, max) in seconds: the same bounds Settings enforces, so the dialog cannot write a value it refuses.
SECONDS: dict[str, tuple[str, float, float]] = {
    "discovery_budget": ("Discovery budget", 0.1, 60),
    "discovery_interval": ("Discover every", 5, 86400),
    "connect_timeout": ("Probe connect timeout", 0.05, 30),
    "health_interval": ("Health check every", 0.2, 3600),
    "health_interval_visible": ("… while the dashboard shows", 0.2, 3600),
    "health_timeout": ("Health check timeout", 0.1, 120),
}


def split_list(text: str) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``."""
    return [part.strip() for part in text.replace("\n", ",").split(",") if part.strip()]


def ports_problem(kind: str, text: str) -> str | None:
    """Why a kind's port list is wrong, or None."""
    for part in split_list(text):
        if not part.isdigit() or not 1 <= int(part) <= 65535:
            return f"{kind} ports must be numbers from 1 to 65535 separated by commas, got {part!r}"
    return None


def urls_problem(text: str) -> str | None:
    """Why the URL list is wrong, or None."""
    bad = next((u for u in split_list(text) if not u.startswith(("http://", "https://"))), None)
    return f"service URLs start with http:// or https://, got {bad!r}" if bad else None


class SettingsDialog(QDialog):
    """Edits settings given as plain values; ``save_requested`` carries only the changed ones.

    ``values``: hosts, urls (lists), ports ({kind: [int]}), the SECONDS names, api_host, api_port, output_dir,
    launch ({name: entry in its plain form}). ``providers``: {provider: status sentence} for the LLM key rows.
    Open it with ``open()``, never ``exec()``.
    """

    save_requested = Signal(dict)  # changed values; "llm_keys": {provider: new key, or None to remove it};
    # "launch": {name: entry in its plain form, or None to remove it}
    check_key_requested = Signal(str, str)  # provider, the key typed here ("" = the one configured)
    preset_requested = Signal(str)  # "Add from a folder…": the folder to make a launch entry from

    def __init__(self, values: Mapping[str, Any], kinds: Sequence[str], providers: Mapping[str, str],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Backlot settings")
        self.setStyleSheet(INVALID_STYLE)
        self.hosts = QLineEdit(", ".join(values.get("hosts", [])), objectName="hosts")
        self.hosts.setPlaceholderText("gpu-box, 10.0.0.5 (localhost is always scanned)")
        self.urls = QLineEdit(", ".join(values.get("urls", [])), objectName="urls")
        self.urls.setPlaceholderText("http://gpu-box:8188, …")
        ports = values.get("ports", {})
        self.ports = {k: QLineEdit(", ".join(str(p) for p in ports.get(k, [])), objectName=f"ports-{k}") for k in kinds}
        self.seconds: dict[str, QDoubleSpinBox] = {}
        for name, (_, lo, hi) in SECONDS.items():
            box = QDoubleSpinBox(objectName=name, decimals=2, minimum=lo, maximum=hi, suffix=" s")
            box.setValue(float(values.get(name, lo)))
            self.seconds[name] = box
        self.api_host = QLineEdit(str(values.get("api_host", "127.0.0.1")), objectName="api_host")
        self.api_port = QSpinBox(objectName="api_port", minimum=0, maximum=65535)
        self.api_port.setValue(int(values.get("api_port", 8770)))
        self.output_dir = QLineEdit(str(values.get("output_dir") or ""), objectName="output_dir")
        self.output_dir.setPlaceholderText("default: the data folder's outputs/")
        self.keys: dict[str, QLineEdit] = {}
        self.key_status: dict[str, QLabel] = {}
        self.removed_keys: set[str] = set()
        self.problem = QLabel(objectName="problem", wordWrap=True)
        self.outcome = QLabel(objectName="outcome", wordWrap=True)
        self.restart_needed: list[str] = []  # after a save: what takes effect only when Backlot restarts
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.save)
        self.buttons.rejected.connect(self.reject)
        self._folder_dialog: QFileDialog | None = None
        self.launch = LaunchEntriesEditor(values.get("launch", {}), kinds)
        self.launch.preset_requested.connect(self.preset_requested)
        self.launch.changed.connect(self._validate)

        tabs = QTabWidget(objectName="settingsTabs")
        tabs.addTab(self._discovery_tab(), "Discovery")
        tabs.addTab(self._health_tab(), "Health")
        tabs.addTab(self._api_tab(), "API and output")
        tabs.addTab(self._keys_tab(providers), "LLM keys")
        tabs.addTab(self.launch, "Backends Backlot starts")
        self.tabs = tabs
        layout = QVBoxLayout(self)
        for w in (tabs, self.problem, self.outcome, self.buttons):
            layout.addWidget(w)
        for edit in (self.hosts, self.urls, self.api_host, self.output_dir, *self.ports.values()):
            edit.textChanged.connect(self._validate)
        self._baseline = self.values()
        self._validate()
        hint = self.sizeHint()  # wide enough for every tab's name and a launch entry's command
        self.resize(max(hint.width(), 800), max(hint.height(), 560))

    # ----- tabs -----
    def _discovery_tab(self) -> QWidget:
        page = QWidget()
        form = QFormLayout(page)
        form.addRow("Hosts to scan", self.hosts)
        form.addRow("Service URLs", self.urls)
        for kind, edit in self.ports.items():
            edit.setPlaceholderText("extra ports, e.g. 8288, 8289")
            form.addRow(f"{kind} ports", edit)
        for name in ("discovery_interval", "discovery_budget", "connect_timeout"):
            form.addRow(SECONDS[name][0], self.seconds[name])
        return page

    def _health_tab(self) -> QWidget:
        page = QWidget()
        form = QFormLayout(page)
        for name in ("health_interval", "health_interval_visible", "health_timeout"):
            form.addRow(SECONDS[name][0], self.seconds[name])
        return page

    def _api_tab(self) -> QWidget:
        page = QWidget()
        form = QFormLayout(page)
        form.addRow("API interface", self.api_host)
        form.addRow("API port", self.api_port)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._pick_folder)
        row = QHBoxLayout()
        row.addWidget(self.output_dir, 1)
        row.addWidget(browse)
        form.addRow("Output folder", row)
        return page

    def _keys_tab(self, providers: Mapping[str, str]) -> QWidget:
        page = QWidget()
        grid = QGridLayout(page)
        note = QLabel("Keys are stored in config.toml (readable by you only) and never shown again.", wordWrap=True)
        grid.addWidget(note, 0, 0, 1, 5)
        for row, (provider, status) in enumerate(sorted(providers.items()), start=1):
            edit = QLineEdit(objectName=f"key-{provider}", echoMode=QLineEdit.EchoMode.Password)
            edit.setPlaceholderText("type a new key to replace the current one")
            label = QLabel(status, objectName=f"key-status-{provider}", wordWrap=True)
            check = QPushButton("Check now", objectName=f"check-{provider}")
            check.clicked.connect(lambda _=False, p=provider: self._check(p))
            forget = QPushButton("Remove", objectName=f"remove-{provider}")
            forget.clicked.connect(lambda _=False, p=provider: self._forget(p))
            for col, w in enumerate((QLabel(provider), edit, label, check, forget)):
                grid.addWidget(w, row, col)
            self.keys[provider], self.key_status[provider] = edit, label
        grid.setRowStretch(len(providers) + 1, 1)
        grid.setColumnStretch(2, 1)
        return page

    # ----- reading -----
    def problems(self) -> list[str]:
        """Reasons the settings cannot be saved as they stand."""
        out = [p for k, e in self.ports.items() if (p := ports_problem(k, e.text()))]
        if (p := urls_problem(self.urls.text())) is not None:
            out.append(p)
        if not self.api_host.text().strip():
            out.append("the API interface cannot be empty (127.0.0.1 keeps it on this machine)")
        return out + self.launch.problems()

    def values(self) -> dict[str, Any]:
        """Every plain value as the dialog holds it now (keys aside)."""
        now: dict[str, Any] = {"hosts": split_list(self.hosts.text()), "urls": split_list(self.urls.text()),
                               "api_host": self.api_host.text().strip(), "api_port": self.api_port.value(),
                               "output_dir": self.output_dir.text().strip() or None,
                               "ports": {k: [int(p) for p in split_list(e.text()) if p.isdigit()]
                                         for k, e in self.ports.items()}}
        now.update({name: box.value() for name, box in self.seconds.items()})
        return now

    def changes(self) -> dict[str, Any]:
        """Only what differs from the values the dialog opened with (keys: typed or removed ones)."""
        out = {k: v for k, v in self.values().items() if v != self._baseline[k]}
        if "ports" in out:
            out["ports"] = {k: v for k, v in out["ports"].items() if v != self._baseline["ports"][k]}
        keys: dict[str, str | None] = {p: None for p in self.removed_keys}
        keys.update({p: e.text().strip() for p, e in self.keys.items() if e.text().strip()})
        if keys:
            out["llm_keys"] = keys
        launch = self.launch.changes()
        if launch:
            out["launch"] = launch
        return out

    def save(self) -> None:
        """Ask the controller to write the changes (the dialog stays open until it says they are saved)."""
        if self.problems():
            return
        self.outcome.setText("Saving…")
        self.save_requested.emit(self.changes())

    # ----- slots fed by the controller -----
    @Slot(str, list)
    def _on_saved(self, message: str, restart: list[str] | None = None) -> None:
        """The changes are written and applied: the dialog closes, unless some take a restart (``restart`` names
        them): then it stays open saying which, with Close instead of Cancel."""
        self.outcome.setText(message)
        self.restart_needed = list(restart or [])
        if not self.restart_needed:
            self.accept()
            return
        self._baseline = self.values()  # saved: a second Save sends nothing again
        self.launch.saved()
        self.removed_keys.clear()
        for edit in self.keys.values():
            edit.clear()
        self.buttons.button(QDialogButtonBox.StandardButton.Cancel).setText("Close")

    @Slot(str)
    def _on_save_failed(self, message: str) -> None:
        """Writing failed (one sentence); the dialog stays open with the values."""
        self.outcome.setText(message)

    def _on_preset(self, name: str, entry: Mapping[str, Any], note: str) -> None:
        """"Add from a folder…" found a backend: its entry, filled in, to check and save."""
        self.tabs.setCurrentWidget(self.launch)
        self.launch._on_preset(name, entry, note)

    def _on_preset_failed(self, sentence: str) -> None:
        """"Add from a folder…" found nothing Backlot knows how to start there."""
        self.launch._on_preset_failed(sentence)

    @Slot(str, str)
    def _on_key_status(self, provider: str, status: str) -> None:
        """The presence or check result of one provider's key."""
        if provider in self.key_status:
            self.key_status[provider].setText(status)

    # ----- internals -----
    def _check(self, provider: str) -> None:
        self.key_status[provider].setText("checking…")
        self.check_key_requested.emit(provider, self.keys[provider].text().strip())

    def _forget(self, provider: str) -> None:
        self.removed_keys.add(provider)
        self.keys[provider].clear()
        self.keys[provider].setPlaceholderText("removed when you save")

    def _pick_folder(self) -> None:
        dialog = QFileDialog(self, "Output folder", self.output_dir.text())
        dialog.setFileMode(QFileDialog.FileMode.Directory)
        dialog.setOption(QFileDialog.Option.ShowDirsOnly)
        dialog.fileSelected.connect(self.output_dir.setText)
        self._folder_dialog = dialog
        dialog.open()

    def _validate(self) -> None:
        for kind, edit in self.ports.items():
            mark_invalid(edit, ports_problem(kind, edit.text()))
        mark_invalid(self.urls, urls_problem(self.urls.text()))
        problems = self.problems()
        self.problem.setText(f"Cannot save: {problems[0]}" if problems else "")
        save = self.buttons.button(QDialogButtonBox.StandardButton.Save)
        save.setEnabled(not problems)
        save.setToolTip("; ".join(problems))
        self.problem.setAlignment(Qt.AlignmentFlag.AlignLeft)
