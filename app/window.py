"""MainWindow: four pages (Create · Queue · Services · Log) and a status strip; remembers its layout.

Create holds the job console (form, viewer, gallery), Queue the job table with the selected job's details,
Services the service cards and the graphs, Log the log. The toolbar switches pages (Ctrl+1…4); the strip at the
bottom shows every service and the queue count on every page.

Importing this module loads Qt's widgets and nothing heavier: the window shows its shell (title, toolbar) first,
and ``populate`` puts the real views (the console, the cards, the log) in once it is on screen; the graphs load
pyqtgraph when first shown. Whatever the shell does not need is imported where it is used: each Qt type PySide6
sets up costs the first paint.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING

from PySide6.QtCore import QByteArray, QSettings, Signal
from PySide6.QtGui import QAction, QActionGroup, QCloseEvent
from PySide6.QtWidgets import QLabel, QMainWindow, QSplitter, QToolBar, QWidget

if TYPE_CHECKING:
    from PySide6.QtWidgets import QStackedWidget

    from PySide6.QtWidgets import QTabWidget

    from backlot.widgets.dashboard import Dashboard
    from backlot.widgets.graphs import Graphs
    from backlot.widgets.launch_console import LaunchConsole
    from backlot.widgets.log_view import LogView
    from backlot.widgets.status_strip import StatusStrip

STATE_ORDER = ("up", "starting", "degraded", "down", "unknown")


def overall_state(states: Mapping[str, str]) -> str:
    """The worst state among services that matter: down > degraded > unknown > starting > up (``unknown`` when
    none)."""
    values = set(states.values())
    for state in ("down", "degraded", "unknown", "starting", "up"):
        if state in values:
            return state
    return "unknown"


def summary(states: Mapping[str, str]) -> str:
    """"4 up · 1 starting · 1 down" (or "no services")."""
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
    launch_console: LaunchConsole  # the Services page's console of a backend Backlot launched
    services_tabs: QTabWidget  # under the cards: Graphs | Console
    log_view: LogView
    console: QWidget
    api_panel: QWidget
    pages: QStackedWidget
    strip: StatusStrip
    split: QSplitter  # the Create page's form | output splitter
    services_split: QSplitter
    queue_page: QWidget

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
        """Put the pages (console, queue, services, log) and the status strip in the shell, as the user left them."""
        from PySide6.QtCore import Qt
        from PySide6.QtGui import QKeySequence, QShortcut
        from PySide6.QtWidgets import QStackedWidget, QTabWidget, QVBoxLayout

        from backlot.widgets.dashboard import Dashboard
        from backlot.widgets.graphs import Graphs
        from backlot.widgets.launch_console import LaunchConsole
        from backlot.widgets.log_view import LogView
        from backlot.widgets.status_strip import StatusStrip
        from backlot.widgets.workflow_drop import WorkflowDrop

        WorkflowDrop(self).dropped.connect(self.workflows_dropped)
        self.dashboard = Dashboard(titles)
        self.graphs = Graphs()
        self.launch_console = LaunchConsole()
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
        for i, action in enumerate(self.page_actions):  # a shortcut builds Qt's enums: not in the shell (30 ms)
            action.setShortcut(f"Ctrl+{i + 1}")
        self.discover_action.triggered.connect(self.dashboard.discover_requested)
        self.demo_action.triggered.connect(self.dashboard.demo_requested)
        for action in (self.discover_action, self.demo_action, *self.page_actions):
            action.setEnabled(True)
        split = getattr(self.console, "split", None)
        if not isinstance(split, QSplitter):  # no console: a placeholder page keeps the layout memory working
            split = QSplitter(Qt.Orientation.Horizontal)
            split.addWidget(self.console)
        self.split = split
        queue = getattr(self.console, "queue_page", None)
        self.queue_page = queue if isinstance(queue, QWidget) else self._console_placeholder("Job queue")
        self.services_split = QSplitter(Qt.Orientation.Vertical, objectName="servicesSplit")
        self.services_tabs = QTabWidget(objectName="servicesTabs", documentMode=True)
        self.services_tabs.addTab(self.graphs, "Graphs")
        self.services_tabs.addTab(self.launch_console, "Console")
        self.services_tabs.setTabToolTip(1, "What a backend Backlot starts prints")
        self.dashboard.console_requested.connect(self.show_console)
        self.services_split.addWidget(self.dashboard)
        self.services_split.addWidget(self.services_tabs)
        self.services_split.setSizes([340, 480])
        self.pages = QStackedWidget(objectName="pages")
        for page in (self.console, self.queue_page, self.services_split, self.log_view):
            self.pages.addWidget(page)
        self.strip = StatusStrip()
        self.strip.service_clicked.connect(self.show_service)
        counted = getattr(self.console, "queue_counted", None)
        if counted is not None:
            counted.connect(self.strip.set_queue)
        central = QWidget()
        column = QVBoxLayout(central)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        column.addWidget(self.pages, 1)
        column.addWidget(self.strip)
        self.setCentralWidget(central)
        QShortcut(QKeySequence("Ctrl+L"), self, activated=self._focus_log_filter)
        self.populated = True
        self.show_page(0)
        if self._restore_pending:  # restore_layout ran on the shell: pages and splitters as the user left them
            self._restore_state()
        self._on_states_changed()

    PAGES = ("Create", "Queue", "Services", "Log")

    def show_page(self, index: int) -> None:
        """Switch to a page (0 Create, 1 Queue, 2 Services, 3 Log); its toolbar action shows checked."""
        if not self.populated or not 0 <= index < len(self.PAGES):
            return
        self.pages.setCurrentIndex(index)
        self.page_actions[index].setChecked(True)

    def current_page(self) -> str:
        """The page shown, by name."""
        return self.PAGES[self.pages.currentIndex()] if self.populated else ""

    def show_service(self, service_id: str) -> None:
        """A status strip item was clicked: the Services page, scrolled to that service's card."""
        self.show_page(2)
        card = self.dashboard.cards.get(service_id)
        if card is not None:
            self.dashboard.scroll.ensureWidgetVisible(card)

    def show_console(self, *_: object) -> None:
        """The Services page with the console of the launch entry selected on it."""
        self.show_page(2)
        self.services_tabs.setCurrentWidget(self.launch_console)

    def _focus_log_filter(self) -> None:
        self.show_page(3)
        self.log_view.focus_filter()

    def _build_toolbar(self) -> None:
        bar = QToolBar("Main")
        bar.setObjectName("mainToolbar")
        bar.setMovable(False)
        self.toolbar = bar
        self.page_group = QActionGroup(self)  # exclusive: one page at a time
        self.page_actions: list[QAction] = []
        for i, name in enumerate(self.PAGES):
            action = QAction(name, self)
            action.setCheckable(True)
            action.setToolTip(f"The {name} page (Ctrl+{i + 1})")
            action.setEnabled(False)  # until populate puts the pages in (and gives it its shortcut)
            action.triggered.connect(lambda _=False, n=i: self.show_page(n))
            self.page_group.addAction(action)
            bar.addAction(action)
            self.page_actions.append(action)
        self.page_actions[0].setChecked(True)
        bar.addSeparator()
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
        bar.addAction(self.demo_action)
        bar.addSeparator()
        self._api_slot = bar.addWidget(QLabel("API"))  # the API panel takes this place in populate
        self.addToolBar(bar)  # the right-aligned summary comes with populate (a size policy builds Qt's enums)

    @staticmethod
    def _console_placeholder(text: str = "Job console") -> QWidget:
        from PySide6.QtCore import Qt

        label = QLabel(text)
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
        self.strip.set_cards(self.dashboard.cards.values())
        self.overall_changed.emit(state, summary(states))

    # ----- layout memory -----
    def restore_layout(self) -> None:
        """Geometry, page and splitters as the user left them."""
        geometry = self.ui_settings.value("geometry")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        if self.populated:
            self._restore_state()
        else:
            self._restore_pending = True

    SPLITS = ("createSplit", "servicesSplit", "queueSplit")

    def _splitters(self) -> dict[str, QSplitter]:
        queue = self.queue_page if isinstance(self.queue_page, QSplitter) else None
        found = {"createSplit": self.split, "servicesSplit": self.services_split, "queueSplit": queue}
        return {k: v for k, v in found.items() if v is not None}

    def _restore_state(self) -> None:
        for key, split in self._splitters().items():
            state = self.ui_settings.value(key)
            if isinstance(state, QByteArray):
                split.restoreState(state)
        tab = self.ui_settings.value("servicesTab")
        if isinstance(tab, str) and tab.isdigit():  # the Services page's Graphs or Console, as left
            self.services_tabs.setCurrentIndex(int(tab))
        page = self.ui_settings.value("page")
        if isinstance(page, str) and page in self.PAGES:
            self.show_page(self.PAGES.index(page))

    def save_layout(self) -> None:
        """Write geometry, the page shown and the splitters to the settings file."""
        self.ui_settings.setValue("geometry", self.saveGeometry())
        for key, split in self._splitters().items():
            self.ui_settings.setValue(key, split.saveState())
        self.ui_settings.setValue("page", self.current_page())
        self.ui_settings.setValue("servicesTab", str(self.services_tabs.currentIndex()))
        self.ui_settings.sync()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 (Qt's name)
        """Save the layout and ask the app layer to shut down (it stops the core, then the loop)."""
        self.closed = True
        if self.populated:  # a shell closed while loading keeps the layout the user left last time
            self.save_layout()
        self.close_requested.emit()
        event.accept()
