"""MainWindow: places the dashboard, the graphs, the job console and the log; remembers its layout.

Importing this module loads Qt's widgets and nothing heavier: the window shows its shell (title, toolbar) first,
and ``populate`` puts the real views (pyqtgraph, the console, the docks) in once it is on screen. Whatever the
shell does not need is imported where it is used: each Qt type PySide6 sets up costs the first paint.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING

from PySide6.QtCore import QByteArray, QSettings, Signal
from PySide6.QtGui import QAction, QCloseEvent
from PySide6.QtWidgets import QDockWidget, QLabel, QMainWindow, QSplitter, QToolBar, QWidget

if TYPE_CHECKING:
    from PySide6.QtCore import Qt

    from backlot.widgets.dashboard import Dashboard
    from backlot.widgets.graphs import Graphs
    from backlot.widgets.log_view import LogView

STATE_ORDER = ("up", "degraded", "down", "unknown")


def overall_state(states: Mapping[str, str]) -> str:
    """The worst state among services that matter: down > degraded > unknown > up (``unknown`` when none)."""
    values = set(states.values())
    for state in ("down", "degraded", "unknown", "up"):
        if state in values:
            return state
    return "unknown"


def summary(states: Mapping[str, str]) -> str:
    """"4 up · 1 down" (or "no services")."""
    from backlot.widgets.style import look

    counts = Counter(states.values())
    parts = [f"{counts[s]} {look(s).word}" for s in STATE_ORDER if counts[s]]
    return " · ".join(parts) if parts else "no services"


class MainWindow(QMainWindow):
    """The control-center window. A view: the app layer connects its signals to the core."""

    close_requested = Signal()
    settings_requested = Signal()
    overall_changed = Signal(str, str)  # state, summary ("4 up · 1 down")
    workflows_dropped = Signal(list)  # .json files dropped anywhere on the window: workflows to import

    dashboard: Dashboard
    graphs: Graphs
    log_view: LogView
    console: QWidget
    api_panel: QWidget

    def __init__(self, titles: Mapping[str, str] | None, settings_file: str, console: QWidget | None = None,
                 api_panel: QWidget | None = None) -> None:
        """The window with its views; with ``titles=None`` only its shell (toolbar), for ``populate`` to fill in.

        The shell uses no ``Qt.*`` enum: PySide6 builds all 93 of Qt's enums on the first use of one (12 ms).
        """
        super().__init__()
        self.setWindowTitle("Backlot")
        self.setObjectName("BacklotMain")  # its icon comes with populate: painting one builds Qt's enums
        self.ui_settings = QSettings(settings_file, QSettings.Format.IniFormat)
        self.populated = False
        self.closed = False  # set by closeEvent: a window closed before it was populated never shows again
        self._restore_pending = False
        self.overall = QLabel()
        self.overall.setObjectName("overall")
        self._build_toolbar()
        self.setCentralWidget(QWidget())  # the splitter takes its place in populate
        self.resize(1440, 900)
        if titles is not None:
            self.populate(titles, console, api_panel)

    def populate(self, titles: Mapping[str, str], console: QWidget | None = None,
                 api_panel: QWidget | None = None) -> None:
        """Put the graphs, console, dashboard, log and API panel in the shell (the layout as the user left it)."""
        from PySide6.QtCore import Qt
        from PySide6.QtGui import QKeySequence, QShortcut

        from backlot.widgets.dashboard import Dashboard
        from backlot.widgets.graphs import Graphs
        from backlot.widgets.log_view import LogView
        from backlot.widgets.workflow_drop import WorkflowDrop

        WorkflowDrop(self).dropped.connect(self.workflows_dropped)
        self.dashboard = Dashboard(titles)
        self.graphs = Graphs()
        self.log_view = LogView()
        self.console = console or self._console_placeholder()
        self.api_panel = api_panel or QLabel("API")
        self.toolbar.insertWidget(self._api_slot, self.api_panel)
        self.toolbar.removeAction(self._api_slot)
        spacer = QWidget()
        spacer.setSizePolicy(spacer.sizePolicy().Policy.Expanding, spacer.sizePolicy().Policy.Preferred)
        self.toolbar.addWidget(spacer)
        self.toolbar.addWidget(self.overall)
        self.discover_action.setShortcut(QKeySequence(Qt.Key.Key_F5))
        self.discover_action.triggered.connect(self.dashboard.discover_requested)
        self.demo_action.triggered.connect(self.dashboard.demo_requested)
        for action in (self.discover_action, self.demo_action):
            action.setEnabled(True)
        split = QSplitter(Qt.Orientation.Vertical)
        split.setObjectName("centralSplit")
        split.addWidget(self.graphs)
        split.addWidget(self.console)
        split.setSizes([360, 440])
        self.split = split
        self.setCentralWidget(split)
        self.services_dock = self._dock("Services", "servicesDock", self.dashboard,
                                        Qt.DockWidgetArea.LeftDockWidgetArea)
        self.log_dock = self._dock("Log", "logDock", self.log_view, Qt.DockWidgetArea.BottomDockWidgetArea)
        QShortcut(QKeySequence("Ctrl+L"), self, activated=self.log_view.focus_filter)
        self.resizeDocks([self.services_dock], [380], Qt.Orientation.Horizontal)
        self.resizeDocks([self.log_dock], [110], Qt.Orientation.Vertical)
        self.populated = True
        if self._restore_pending:  # restore_layout ran on the shell: docks and splitter as the user left them
            self._restore_state()
        self._on_states_changed()

    def _dock(self, title: str, name: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)
        dock.setWidget(widget)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                         | QDockWidget.DockWidgetFeature.DockWidgetFloatable)
        self.addDockWidget(area, dock)
        return dock

    def _build_toolbar(self) -> None:
        bar = QToolBar("Main")
        bar.setObjectName("mainToolbar")
        bar.setMovable(False)
        self.toolbar = bar
        self.discover_action = QAction("⟳ Discover", self)
        self.discover_action.setToolTip("Look for backends now (F5)")
        self.settings_action = QAction("⚙ Settings", self)
        self.settings_action.triggered.connect(self.settings_requested)
        self.demo_action = QAction("▶ Demo", self)
        self.demo_action.setToolTip("Start the built-in stand-in backends")
        for action in (self.discover_action, self.demo_action):
            action.setEnabled(False)  # until populate connects them to the dashboard
        bar.addAction(self.discover_action)
        bar.addAction(self.settings_action)
        bar.addSeparator()
        self._api_slot = bar.addWidget(QLabel("API"))  # the API panel takes this place in populate
        bar.addSeparator()
        bar.addAction(self.demo_action)
        self.addToolBar(bar)  # the right-aligned summary comes with populate (a size policy builds Qt's enums)

    @staticmethod
    def _console_placeholder() -> QWidget:
        from PySide6.QtCore import Qt

        label = QLabel("Job console")
        label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        return label

    # ----- slots -----
    def _on_states_changed(self, *_: object) -> None:
        """Recount the cards' states for the title bar (and the tray, which the app connects)."""
        states = self.dashboard.states()
        state = overall_state(states)
        from backlot.widgets.style import look, state_icon

        st = look(state)
        self.overall.setText(f"{st.symbol} {summary(states)}")
        self.overall.setStyleSheet(f"color: {st.color}; font-weight: 600; padding: 0 8px;")
        self.setWindowIcon(state_icon(state))
        self.overall_changed.emit(state, summary(states))

    # ----- layout memory -----
    def restore_layout(self) -> None:
        """Geometry, docks and splitter as the user left them."""
        geometry = self.ui_settings.value("geometry")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        if self.populated:
            self._restore_state()
        else:
            self._restore_pending = True

    def _restore_state(self) -> None:
        state = self.ui_settings.value("windowState")
        if isinstance(state, QByteArray):
            self.restoreState(state)
        split = self.ui_settings.value("centralSplit")
        if isinstance(split, QByteArray):
            self.split.restoreState(split)

    def save_layout(self) -> None:
        """Write geometry, docks and splitter to the settings file."""
        self.ui_settings.setValue("geometry", self.saveGeometry())
        self.ui_settings.setValue("windowState", self.saveState())
        self.ui_settings.setValue("centralSplit", self.split.saveState())
        self.ui_settings.sync()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 (Qt's name)
        """Save the layout and ask the app layer to shut down (it stops the core, then the loop)."""
        self.closed = True
        if self.populated:  # a shell closed while loading keeps the layout the user left last time
            self.save_layout()
        self.close_requested.emit()
        event.accept()
