"""The job form: task, prompt, input files, parameters from the task schema, backend auto or pinned, live route."""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from backlot.services.models import Job, JobState
from backlot.services.tasks import InputSpec, ParamSpec, TaskSpec
from backlot.widgets.param_fields import INVALID_STYLE, MEDIA_SUFFIXES, ParamField, clear_box, input_problem, mark_invalid

AUTO = "auto"
WORKFLOW = "workflow"  # the parameter naming a ComfyUI workflow: a list to pick from, or a name or path typed in
# Parameters most shots leave alone: folded into the form's "Advanced" group.
ADVANCED = frozenset({"cfg", "checkpoint", "prefix", "batch", "negative_prompt", "model_type", "settings", "complexity",
                      "resolution", "candidates", "speaker_id", "f0_method", "stream", "system", "guidance",
                      "max_tokens", "temperature", "strength", "fps"})


def task_label(name: str) -> str:
    """``text_to_video`` -> "Text → video"."""
    words = name.replace("_to_", " → ").replace("_", " ")
    return words[:1].upper() + words[1:]


def job_status_text(job: Job) -> str:
    """Where a job is now, for the status beside Generate: "#4 queued", "#4 running 40%", "#4 succeeded in 12.3 s",
    "#4 failed: the sentence"."""
    head = f"#{job.seq} {job.state.value}"
    if job.state is JobState.RUNNING:
        fraction = job.status.fraction
        return f"{head} {fraction:.0%}" if fraction is not None else head
    if job.state is JobState.SUCCEEDED and job.started_at is not None and job.finished_at is not None:
        return f"{head} in {job.finished_at - job.started_at:.1f} s"
    if job.state.terminal and job.error is not None:
        return f"{head}: {job.error.message.splitlines()[0] if job.error.message else job.error.code}"
    return head


class JobForm(QWidget):
    """Task picker and form built from the task schema; emits ``changed`` for the live route and ``submitted``."""

    changed = Signal(str, dict, str)  # task, params, backend ("auto" or a service id)
    submitted = Signal(str, str, dict, list, str)  # task, prompt, params, inputs, backend

    def __init__(self, tasks: Sequence[TaskSpec], serving: Mapping[str, Sequence[str]] | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setStyleSheet(INVALID_STYLE)
        self._tasks = {t.name: t for t in tasks}
        self._serving = {k: list(v) for k, v in (serving or {}).items()}
        self._services: list[dict[str, Any]] = []
        self._workflows: list[dict[str, Any]] = []  # workflows.list's entries, for the workflow field's list
        self.fields: dict[str, ParamField] = {}
        self._extra: dict[str, QLabel] = {}  # parameters a workflow adds, with their labels
        self.schema_problem = ""  # why the values cannot be used (no such workflow), from the core
        self.input_edits: list[tuple[InputSpec, QLineEdit]] = []
        self._file_dialog: QFileDialog | None = None

        self.task_combo = QComboBox(objectName="task")
        for t in tasks:
            self.task_combo.addItem(task_label(t.name), t.name)
            self.task_combo.setItemData(self.task_combo.count() - 1, t.description, Qt.ItemDataRole.ToolTipRole)
        self.backend_combo = QComboBox(objectName="backend")
        self.description = QLabel(wordWrap=True, objectName="task-description")
        self.prompt = QPlainTextEdit(objectName="prompt")
        self.prompt.setPlaceholderText("Describe the shot, the sound or the text you want")
        self.prompt.setFixedHeight(self.prompt.fontMetrics().lineSpacing() * 5)
        self.inputs_box = QWidget()
        self.params_box = QWidget(objectName="params")
        self.advanced_button = QToolButton(objectName="advanced", checkable=True)
        self.advanced_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.advanced_button.setArrowType(Qt.ArrowType.RightArrow)
        self.advanced_button.setAutoRaise(True)
        self.advanced_button.setToolTip("Parameters most shots leave to the backend's defaults")
        self.advanced_box = QWidget(objectName="advanced-params")
        self.advanced_box.setVisible(False)
        self.advanced_button.toggled.connect(self._on_advanced_toggled)
        for box in (self.inputs_box, self.params_box, self.advanced_box):
            form = QFormLayout(box)
            form.setContentsMargins(0, 0, 0, 0)
            form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.route_label = QLabel(wordWrap=True, objectName="route")
        self.route_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.route_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.problem_label = QLabel(wordWrap=True, objectName="problem")
        self.problem_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.status_label = QLabel(objectName="submit-status")
        self.submitted_id: str | None = None  # the last job this form submitted: the status beside Generate follows it
        self.generate = QPushButton("Generate  ⌃⏎", objectName="generate")
        self.generate.setToolTip("Submit the job (Ctrl+Enter)")

        self.description.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        head = QFormLayout()
        head.setContentsMargins(0, 0, 0, 0)
        head.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        head.addRow("Task", self.task_combo)
        backend = QFormLayout()
        backend.setContentsMargins(0, 0, 0, 0)
        backend.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        backend.addRow("Backend", self.backend_combo)
        bottom = QHBoxLayout()
        bottom.addWidget(self.status_label, 1)
        bottom.addWidget(self.generate)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for part in (head, self.description, QLabel("Prompt"), self.prompt, self.inputs_box, self.params_box,
                     self.advanced_button, self.advanced_box, backend):
            layout.addLayout(part) if isinstance(part, QFormLayout) else layout.addWidget(part)
        layout.addStretch(1)
        for part in (self.route_label, self.problem_label, bottom):  # the live route right above Generate
            layout.addLayout(part) if isinstance(part, QHBoxLayout) else layout.addWidget(part)

        self.task_combo.currentIndexChanged.connect(self._on_task_picked)
        self.backend_combo.currentIndexChanged.connect(self._on_edited)
        self.prompt.textChanged.connect(self._on_edited)
        self.generate.clicked.connect(self.submit)
        for keys in ("Ctrl+Return", "Ctrl+Enter"):
            QShortcut(QKeySequence(keys), self, self.submit, context=Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self._on_task_picked()

    # ----- reading the form -----
    @property
    def task(self) -> str:
        """The task picked."""
        return str(self.task_combo.currentData())

    @property
    def backend(self) -> str:
        """``auto`` or the pinned service id."""
        return str(self.backend_combo.currentData() or AUTO)

    def params(self) -> dict[str, Any]:
        """The parameters set to something other than their default (invalid ones left out)."""
        return {name: v for name, f in self.fields.items() if (v := f.value()) is not None}

    def inputs(self) -> list[str]:
        """Input paths in schema order, up to the last one given."""
        paths = [edit.text().strip() for _, edit in self.input_edits]
        while paths and not paths[-1]:
            paths.pop()
        return paths

    def problems(self) -> list[str]:
        """Every reason the job cannot be submitted as it stands, one sentence each."""
        out = [e for f in self.fields.values() if (e := f.error())]
        out += [p for spec, edit in self.input_edits if (p := input_problem(spec, edit.text().strip()))]
        if self.schema_problem:
            out.insert(0, self.schema_problem)
        spec = self._tasks[self.task]
        if spec.needs_prompt and not self.prompt.toPlainText().strip():
            out.append("write a prompt")
        return out

    def set_task(self, name: str) -> None:
        """Pick a task by name."""
        self.task_combo.setCurrentIndex(self.task_combo.findData(name))

    def select_workflow(self, task: str, name: str) -> None:
        """Pick a task and, in its workflow field, a workflow (after an import)."""
        if task in self._tasks:
            self.set_task(task)
        if WORKFLOW in self.fields:
            self.fields[WORKFLOW].set_value(name)

    def set_backend(self, service_id: str) -> None:
        """Pin a service (``auto`` to let the router choose); unknown ids fall back to auto."""
        self.backend_combo.setCurrentIndex(max(0, self.backend_combo.findData(service_id)))

    def submit(self) -> None:
        """Emit ``submitted`` when the form is valid (Generate, Ctrl+Enter)."""
        if self.problems():
            self._refresh_problems()
            return
        self.status_label.setText("")
        prompt = self.prompt.toPlainText().strip() if self._tasks[self.task].takes_prompt else ""  # read by none
        self.submitted.emit(self.task, prompt, self.params(), self.inputs(), self.backend)

    # ----- slots fed by the controller -----
    @Slot(list)
    def _on_services(self, services: Iterable[Mapping[str, Any]]) -> None:
        """The services known now (``ServiceRecord.to_dict()`` shapes): the pin choices."""
        self._services = [dict(s) for s in services]
        self._fill_backends()

    @Slot(list)
    def _on_workflows(self, workflows: Iterable[Mapping[str, Any]]) -> None:
        """The workflows a job may name (``workflows.list``'s entries): the workflow field's list for the task."""
        self._workflows = [dict(w) for w in workflows]
        if WORKFLOW in self.fields:
            self.fields[WORKFLOW].set_suggestions(self._workflow_items())

    def _workflow_items(self) -> list[tuple[str, str]]:
        mine = sorted((w for w in self._workflows if w.get("task") == self.task), key=lambda w: str(w["name"]))
        return [(str(w["name"]), f"{w.get('description', '')} ({w.get('source', '')})".strip()) for w in mine]

    @Slot(str, bool)
    def _on_route_explained(self, explanation: str, ok: bool) -> None:
        """The router's answer for the form as it stands."""
        self.route_label.setText(("→ " if ok else "✕ no backend can run this now: ") + explanation)
        self.route_label.setProperty("ok", ok)
        mark_invalid(self.route_label, None if ok else explanation)

    @Slot(str)
    def _on_submit_failed(self, message: str) -> None:
        """The core refused the job; its sentence is shown where the problems are."""
        self.problem_label.setText(message)
        self.status_label.setText("")

    @Slot(object)
    def _on_submitted(self, job: Job) -> None:
        """The core accepted the job (its snapshot): the status beside Generate follows it from now on."""
        self.problem_label.setText("")
        self.submitted_id = job.id
        self._on_job(job)

    @Slot(object)
    def _on_job(self, job: Job) -> None:
        """A job snapshot: when it is the job last submitted here, the status says where it is now."""
        if job.id == self.submitted_id:
            self.status_label.setText(job_status_text(job))
            self.status_label.setToolTip(job.error.message if job.error is not None else "")

    def _on_advanced_toggled(self, on: bool) -> None:
        self.advanced_box.setVisible(on)
        self.advanced_button.setArrowType(Qt.ArrowType.DownArrow if on else Qt.ArrowType.RightArrow)

    # ----- building -----
    def _on_task_picked(self) -> None:
        spec = self._tasks[self.task]
        self.description.setText(spec.description)
        self.prompt.setEnabled(spec.takes_prompt)  # voice conversion, upscale: the prompt box is not read
        self._build_inputs(spec)
        self._build_params(spec)
        self._fill_backends()
        self._on_edited()

    def _build_inputs(self, spec: TaskSpec) -> None:
        clear_box(self.inputs_box)
        self.input_edits = []
        form = self.inputs_box.layout()
        assert isinstance(form, QFormLayout)
        for want in spec.inputs:
            edit = QLineEdit(objectName=f"input-{want.name}")
            edit.setPlaceholderText(f"{want.media} file{'' if want.required else ' (optional)'}: {want.help}")
            edit.textChanged.connect(self._on_edited)
            browse = QPushButton("Browse…")
            browse.clicked.connect(lambda _=False, w=want, e=edit: self._pick_file(w, e))
            row = QHBoxLayout()
            row.addWidget(edit, 1)
            row.addWidget(browse)
            form.addRow(want.name.capitalize(), row)
            self.input_edits.append((want, edit))

    def _build_params(self, spec: TaskSpec) -> None:
        clear_box(self.params_box)
        clear_box(self.advanced_box)
        for old in self.fields.values():
            old.deleteLater()
        self.fields, self._extra, self.schema_problem = {}, {}, ""
        self._add_params(sorted(spec.params, key=lambda p: p.name != WORKFLOW))  # the workflow first: it adds rows

    def _add_params(self, params: Iterable[ParamSpec]) -> list[QLabel]:
        labels = []
        for param in params:
            box = self.advanced_box if param.name in ADVANCED else self.params_box
            form = box.layout()
            assert isinstance(form, QFormLayout)
            field = ParamField(param, box, suggest=param.name == WORKFLOW)
            if param.name == WORKFLOW:
                field.set_suggestions(self._workflow_items())
            field.changed.connect(self._on_edited)
            label = QLabel(param.name.replace("_", " "))
            label.setToolTip(field.describe())
            form.addRow(label, field.widget)
            self.fields[param.name] = field
            labels.append(label)
        self._count_advanced()
        return labels

    def _count_advanced(self) -> None:
        n = sum(1 for name in self.fields if name in ADVANCED)
        self.advanced_button.setText(f"Advanced ({n})")
        self.advanced_button.setVisible(n > 0)

    @Slot(str, object, str)
    def _on_schema(self, task: str, spec: TaskSpec | None, problem: str) -> None:
        """What the form's values add to the task's parameters (a workflow's bindings), or why they cannot be used."""
        if task != self.task:
            return
        self.schema_problem = problem
        base = self._tasks[task]
        extras = tuple(p for p in (spec.params if spec else ()) if base.param(p.name) is None)
        if tuple(p.name for p in extras) == tuple(self._extra):
            self._refresh_problems()
            return
        kept = {name: self.fields[name].raw() for name in self._extra}
        for name in self._extra:  # only the added rows go: the field being typed in keeps its focus
            field = self.fields.pop(name)
            for box in (self.params_box, self.advanced_box):
                form = box.layout()
                assert isinstance(form, QFormLayout)
                row, _role = form.getWidgetPosition(field.widget)
                if row >= 0:
                    form.removeRow(row)
            field.deleteLater()
        labels = self._add_params(extras)
        self._extra = {p.name: label for p, label in zip(extras, labels)}
        for name, value in kept.items():
            if name in self.fields and value is not None:
                self.fields[name].set_value(value)
        self._on_edited()

    def _fill_backends(self) -> None:
        current = self.backend
        kinds = self._serving.get(self.task)
        self.backend_combo.blockSignals(True)
        self.backend_combo.clear()
        self.backend_combo.addItem("Auto (router decides)", AUTO)
        for s in sorted(self._services, key=lambda s: (str(s.get("kind")), str(s.get("id")))):
            if kinds is not None and s.get("kind") not in kinds:
                continue
            note = "" if s.get("usable", True) else " (not usable)"
            self.backend_combo.addItem(f"{s['id']}{note}", s["id"])
        self.backend_combo.setCurrentIndex(max(0, self.backend_combo.findData(current)))
        self.backend_combo.blockSignals(False)
        if self.backend != current:
            self._on_edited()

    def _pick_file(self, want: InputSpec, edit: QLineEdit) -> None:
        patterns = " ".join(f"*.{s}" for s in MEDIA_SUFFIXES[want.media])
        dialog = QFileDialog(self, f"Choose the {want.media} file", "", f"{want.media.capitalize()} files ({patterns})")
        dialog.setFileMode(QFileDialog.FileMode.ExistingFile)
        dialog.fileSelected.connect(edit.setText)
        self._file_dialog = dialog  # kept until the next pick: open() returns at once
        dialog.open()

    def _on_edited(self) -> None:
        self._refresh_problems()
        self.changed.emit(self.task, self.params(), self.backend)

    def _refresh_problems(self) -> None:
        for field in self.fields.values():
            mark_invalid(field.widget, field.error(), field.describe())
        for spec, edit in self.input_edits:
            mark_invalid(edit, input_problem(spec, edit.text().strip()) if edit.text().strip() else None)
        problems = self.problems()
        self.generate.setEnabled(not problems)
        self.problem_label.setText(f"Cannot generate: {problems[0]}" if problems else "")
        self.generate.setToolTip("; ".join(problems) if problems else "Submit the job (Ctrl+Enter)")
