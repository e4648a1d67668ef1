"""The Launcher: each launch entry's lifecycle on the event loop.

stopped → starting (spawned; ready when discovery's fingerprint for its kind answers on its port) → running.
An exit nobody asked for: the jobs on it are told, then → restarting (after a backoff: 0 s, 1 s, 2 s …) → starting;
the third such exit within two minutes (settings) → failed, with the last console lines. A start that is not
ready in time → failed, with its exit code or "still running" and the last lines. A port some other process holds
→ blocked, naming that process; Backlot never touches it. Stop: SIGTERM to the whole process tree, SIGKILL after
the entry's grace period.

Every process is recorded in ``<data>/launched.json``; the next Backlot adopts one that still runs (or stops it,
as the settings say), so a killed Backlot leaves nothing it cannot take back.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

import aiohttp

from backlot.services.config import Settings
from backlot.services.connectivity.discovery import identify
from backlot.services.errors import ServiceError
from backlot.services.events import EventBus, LaunchOutput, LaunchUpdated
from backlot.services.keeper import TaskKeeper
from backlot.services.launch import process
from backlot.services.launch.console import Console, ConsoleLine
from backlot.services.launch.entry import LaunchEntry, RestartPolicy, StartWhen
from backlot.services.launch.run import EntryRun, spawn_or_undo
from backlot.services.launch.view import ExitInfo, LaunchView

log = logging.getLogger(__name__)
TICK = 0.2  # seconds between looks at the consoles' files (and at adopted processes)
READY_POLL = 0.2  # seconds between readiness probes while a backend starts


class LaunchNotFound(LookupError):
    """No launch entry of that name."""


OnReady = Callable[[LaunchEntry], Awaitable[None]]
OnExit = Callable[[str, str], Awaitable[object]]


class Launcher:
    """Runs the settings' launch entries (and ones a front adds, like the demo's stand-ins)."""

    def __init__(self, settings: Settings, bus: EventBus, session: Callable[[], aiohttp.ClientSession], *,
                 on_ready: OnReady | None = None, on_exit: OnExit | None = None,
                 secrets: Callable[[], Iterable[str]] = tuple, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.bus = bus
        self.session = session
        self.on_ready = on_ready
        self.on_exit = on_exit
        self.secrets = secrets
        self.clock = clock
        self.records = process.Records(settings.data_path / "launched.json")
        self.logs_dir = settings.data_path / "launch"
        self.keeper = TaskKeeper()
        self.runs: dict[str, EntryRun] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = False

    # ----- entries -----
    def entries(self) -> dict[str, LaunchEntry]:
        """The entries as configured now (settings' ``launch`` table)."""
        return dict(self.settings.launch)

    def _run_for(self, name: str) -> EntryRun:
        run = self.runs.get(name)
        if run is None:
            raise LaunchNotFound(f"no launch entry named {name!r}" + (
                f"; the entries are {', '.join(sorted(self.runs))}" if self.runs else
                "; none is configured (add one in Settings, or under [launch.NAME] in config.toml)"))
        return run

    def _make_run(self, name: str, entry: LaunchEntry) -> EntryRun:
        console = Console(self.settings.console_lines, [*entry.secrets(), *self.secrets()])
        return EntryRun(name, entry, console, self.logs_dir / f"{name}.log")

    def sync(self) -> None:
        """Follow the settings' entries: new ones appear (stopped), removed ones stop, changed ones apply at their
        next start (or now, when stopped)."""
        configured = self.entries()
        for name, entry in configured.items():
            run = self.runs.get(name)
            if run is None:
                self.runs[name] = self._make_run(name, entry)
                self._publish(self.runs[name])
            elif run.entry != entry:
                if run.state in ("stopped", "failed", "blocked"):
                    run.entry = entry
                    run.console.set_secrets([*entry.secrets(), *self.secrets()])
                else:
                    run.pending = entry
                    run.message = "changed in the settings: restart it to apply"
                self._publish(run)
        for name in [n for n in self.runs if n not in configured]:
            run = self.runs.pop(name)
            if run.alive() or run.task is not None:
                self.keeper.spawn(f"launch remove {name}", self._stop(run, "removed from the settings"))

    # ----- start and stop of the launcher itself -----
    async def start(self) -> None:
        """Adopt (or stop) what an earlier Backlot left running, say which ports others hold, start the
        entries that start with Backlot."""
        if self._started:
            return
        self._started = True
        self._loop = asyncio.get_running_loop()
        self.sync()
        records = await asyncio.to_thread(self.records.load)
        for name, rec in records.items():
            run = self.runs.get(name)
            proc = await asyncio.to_thread(process.matches, rec)
            if proc is None:
                await asyncio.to_thread(self.records.drop, name)
                continue
            if run is None or self.settings.orphans == "stop" or run.entry.port != rec.port:
                why = "its entry is gone" if run is None else (
                    "its port changed" if run.entry.port != rec.port else "the settings say stop orphans")
                log.info("stopping %s (pid %d), launched by an earlier Backlot: %s", name, rec.pid, why)
                await asyncio.to_thread(process.stop_tree, rec.pid, run.entry.stop_grace if run else 10.0)
                await asyncio.to_thread(self.records.drop, name)
                continue
            self._adopt(run, rec)
        self.keeper.spawn("launch tick", self._tick_loop())
        for run in self.runs.values():
            if run.state == "stopped":
                if run.entry.start is StartWhen.WITH_BACKLOT:
                    self._begin(run)
                else:
                    self.keeper.spawn(f"launch port {run.name}", self._check_port(run))

    async def close(self) -> None:
        """Stop what Backlot runs, except entries that keep running (they are adopted next time)."""
        stops = []
        for run in list(self.runs.values()):
            if run.entry.keep_running and run.alive():
                log.info("%s keeps running (pid %s)", run.name, run.pid)
                if run.task is not None:
                    run.task.cancel()
                continue
            if run.alive() or run.task is not None:
                stops.append(self._stop(run, "Backlot closed"))
        if stops:
            await asyncio.gather(*stops, return_exceptions=True)
        await self.keeper.cancel_all()
        self._started = False

    # ----- use cases -----
    def views(self) -> list[LaunchView]:
        """Every entry, by name."""
        return [r.view() for _, r in sorted(self.runs.items())]

    def view(self, name: str) -> LaunchView:
        """One entry (LaunchNotFound when unknown)."""
        return self._run_for(name).view()

    def console(self, name: str, since: int = 0, limit: int | None = None) -> list[ConsoleLine]:
        """An entry's console lines numbered above ``since``."""
        return self._run_for(name).console.since(since, limit)

    async def start_entry(self, name: str) -> LaunchView:
        """Start an entry (a no-op while it runs or starts); the view once it is spawned, not yet ready."""
        run = self._run_for(name)
        if run.state in ("running", "starting", "restarting"):
            return run.view()
        if run.pending is not None:
            run.entry, run.pending = run.pending, None
        run.crashes.clear()
        return await self._begin_and_spawned(run)

    async def _begin_and_spawned(self, run: EntryRun) -> LaunchView:
        self._begin(run)
        changed = asyncio.Event()
        unsubscribe = self.bus.subscribe(lambda e: changed.set() if e.view.name == run.name else None, LaunchUpdated)
        try:  # until it has a process (or could not get one)
            async with asyncio.timeout(30):
                while not (run.alive() or run.state in ("running", "failed", "blocked", "stopped")):
                    changed.clear()
                    await changed.wait()
        finally:
            unsubscribe()
        return run.view()

    async def stop_entry(self, name: str) -> LaunchView:
        """Stop an entry's whole process tree; the view once it has ended."""
        run = self._run_for(name)
        await self._stop(run, "stopped on request")
        return run.view()

    async def restart_entry(self, name: str, entry: LaunchEntry | None = None) -> LaunchView:
        """Stop, then start again (with ``entry`` instead of the configured one, e.g. Wan2GP with --mcp)."""
        run = self._run_for(name)
        await self._stop(run, "restarting on request")
        if entry is not None:
            run.entry, run.pending = entry, None
        elif run.pending is not None:
            run.entry, run.pending = run.pending, None
        run.crashes.clear()
        return await self._begin_and_spawned(run)

    async def wait_state(self, name: str, states: Iterable[str], timeout: float) -> LaunchView:
        """Wait until the entry is in one of ``states`` (TimeoutError otherwise)."""
        wanted = set(states)
        run = self._run_for(name)
        changed = asyncio.Event()
        unsubscribe = self.bus.subscribe(lambda e: changed.set() if e.view.name == name else None, LaunchUpdated)
        try:
            async with asyncio.timeout(timeout):
                while run.state not in wanted:
                    changed.clear()
                    await changed.wait()
        finally:
            unsubscribe()
        return run.view()

    def starting_entries(self) -> list[LaunchEntry]:
        """The entries being (re)started now (the router lets jobs wait for them)."""
        return [r.entry for r in self.runs.values() if r.state in ("starting", "restarting")]

    def starting(self, service_id: str) -> str | None:
        """Why a service that Backlot is (re)starting is not there yet, or None (the router's queued jobs wait)."""
        for run in self.runs.values():
            if run.entry.service_id == service_id and run.state in ("starting", "restarting"):
                return run.message or run.state
        return None

    async def exit_reason(self, service_id: str, wait: float = 1.0) -> str | None:
        """When a job just lost its connection to a launched backend: the sentence for the job if the process has
        exited (waiting up to ``wait`` seconds for it to), else None."""
        run = next((r for r in self.runs.values() if r.entry.service_id == service_id), None)
        if run is None:
            return None
        if run.exit_sentence is not None and self.clock() - run.exit_sentence[0] < 30:
            return run.exit_sentence[1]
        if run.pid is None:
            return None
        try:  # the connection can drop a moment before the exit is seen
            await asyncio.wait_for(asyncio.shield(run.exited.wait()), wait)
        except TimeoutError:
            return None
        for _ in range(100):  # the exit handler words the sentence a moment after the event
            if run.exit_sentence is not None and self.clock() - run.exit_sentence[0] < 30:
                return run.exit_sentence[1]
            await asyncio.sleep(0.01)
        return None

    # ----- lifecycle -----
    def _begin(self, run: EntryRun) -> None:
        run.wanted, run.stopping = True, False
        if run.task is None or run.task.done():
            if not run.alive():  # from now on jobs for it wait for it
                self._set(run, "starting", "starting")
            run.task = self.keeper.spawn(f"launch {run.name}", self._supervise(run))

    async def _supervise(self, run: EntryRun) -> None:
        """Start, wait until ready, watch for the exit; restart with backoff per the policy."""
        delay = 0.0
        while run.wanted:
            if delay:
                self._set(run, "restarting", f"restarting in {delay:.0f} s" + run.after_exit())
                await asyncio.sleep(delay)
            if not run.alive() and not await self._spawn(run):
                return
            ready = await self._until_ready(run)
            if not run.wanted:
                return
            if not ready:
                if run.exited.is_set():  # it died while starting: a crash like any other
                    after = await self._crashed(run, during_start=True)
                    if after is None:
                        return
                    delay = after
                    continue
                return  # not ready in time: _until_ready said so and stopped it
            await run.exited.wait()
            if not run.wanted or run.stopping:
                return
            after = await self._crashed(run, during_start=False)
            if after is None:
                return
            delay = after

    async def _spawn(self, run: EntryRun) -> bool:
        entry = run.entry
        busy = await asyncio.to_thread(process.port_in_use, entry.host, entry.port)
        for _ in range(20 if busy and run.crashes else 0):  # what a crashed run left may take a moment to go
            await asyncio.sleep(0.1)
            busy = await asyncio.to_thread(process.port_in_use, entry.host, entry.port)
            if not busy:
                break
        if busy:
            run.wanted = False
            await self._blocked(run)
            return False
        run.holder = ""
        run.exited = asyncio.Event()
        run.exit_code = None
        run.adopted = False
        run.console.set_secrets([*entry.secrets(), *self.secrets()])
        try:
            if entry.demo:  # on this thread: the stand-in dies with it (a killed demo leaves no orphans)
                popen = process.spawn(entry, run.log_path)
            else:
                popen = await spawn_or_undo(entry, run.log_path)
        except process.LaunchError as err:
            run.wanted = False
            self._note(run, str(err))
            self._set(run, "failed", str(err))
            return False
        run.popen, run.pid, run.log_pos = popen, popen.pid, 0
        rec = await asyncio.to_thread(process.record_for, run.name, entry, popen.pid, run.log_path)
        run.create_time = rec.create_time
        try:
            await asyncio.to_thread(self.records.put, rec)
        except OSError as err:  # a full or read-only data folder: it runs, but cannot be adopted later
            log.warning("cannot record %s in %s: %s", run.name, self.records.path, err)
        threading.Thread(target=self._reap, args=(run, popen), name=f"launch-wait-{run.name}", daemon=True).start()
        self._note(run, f"started: {entry.shown_command()} (pid {popen.pid})")
        self._set(run, "starting", f"starting (pid {popen.pid}); waiting for it to answer on port {entry.port}")
        log.info("launched %s: pid %d on port %d", run.name, popen.pid, entry.port)
        return True

    def _reap(self, run: EntryRun, popen: subprocess.Popen[bytes]) -> None:  # a thread per launched process
        code = popen.wait()
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._ended, run, popen.pid, code)
            except RuntimeError:  # the loop closed meanwhile
                pass

    def _ended(self, run: EntryRun, pid: int, code: int | None) -> None:
        if run.pid != pid or run.exited.is_set():
            return
        lines = (*run.read_console(), *run.console.flush())
        if lines:
            self.bus.publish(LaunchOutput(run.name, lines))
        run.exit_code = code
        run.exited.set()

    async def _until_ready(self, run: EntryRun) -> bool:
        """Probe the port until the kind's fingerprint answers, the process ends or the timeout passes."""
        entry = run.entry
        deadline = self.clock() + entry.ready_timeout
        timeout = aiohttp.ClientTimeout(total=3.0, sock_connect=0.5)
        while run.wanted:
            if run.exited.is_set():
                return False
            try:
                ident = await identify(self.session(), entry.url, timeout)
            except ServiceError:
                ident = None
            except Exception as err:  # a fingerprint's own bug must not stop the launcher
                log.debug("probing %s: %s", entry.url, err)
                ident = None
            if ident is not None:
                note = ""
                if ident.kind.value != entry.kind:
                    note = f"; it answers as {ident.kind.value}, not {entry.kind}"
                if not ident.usable:
                    note += f"; {ident.hint}" if ident.hint else "; not usable as it runs"
                self._note(run, f"ready on {entry.url}")
                if self.on_ready is not None:  # known to discovery before anyone hears it runs
                    try:
                        await self.on_ready(entry)
                    except Exception:
                        log.exception("after %s became ready", run.name)
                self._set(run, "running", f"running (pid {run.pid})" + note)
                return True
            if self.clock() >= deadline:
                break
            await asyncio.sleep(READY_POLL)
        if not run.wanted:
            return False
        still = "still running" if not run.exited.is_set() else f"exited with {ExitInfo(run.exit_code, 0, False).words}"
        await self._kill(run)
        run.wanted = False
        why = f"not ready after {entry.ready_timeout:.0f} s ({still}); stopped it"
        self._note(run, why)
        self._set(run, "failed", why + run.last_lines())
        return False

    async def _crashed(self, run: EntryRun, during_start: bool) -> float | None:
        """An exit nobody asked for: tell the jobs, then the delay before the restart, or None to give up."""
        now = self.clock()
        info = ExitInfo(run.exit_code, time.time(), expected=False)
        run.last_exit = info
        run.crashes.append(now)
        recent = [t for t in run.crashes if now - t <= self.settings.crash_loop_seconds]
        await asyncio.to_thread(self.records.drop, run.name)
        if run.pid is not None and not run.adopted:  # what it left behind (its children) goes with it
            await asyncio.to_thread(process.kill_group, run.pid)
        run.pid, run.popen, run.adopted = None, None, False
        policy_restarts = run.entry.restart is RestartPolicy.ON_CRASH
        loop = len(recent) >= self.settings.crash_loop_exits
        if not policy_restarts:
            outcome = ""
        elif loop:
            outcome = (f" and was not restarted: it exited {len(recent)} times within "
                       f"{self.settings.crash_loop_seconds:.0f} s")
        else:
            outcome = " and was restarted"
        sentence = f"the backend exited ({info.words}){outcome}"
        run.exit_sentence = (now, sentence)
        if policy_restarts and not loop:  # from now on queued jobs wait for it rather than go to a dead port
            self._set(run, "restarting", f"restarting after it exited ({info.words})")
        self._note(run, f"exited ({info.words})" + (" while starting" if during_start else ""))
        log.warning("%s exited (%s)%s", run.name, info.words, " while starting" if during_start else "")
        if self.on_exit is not None and not during_start:
            try:
                await self.on_exit(run.entry.service_id, sentence)
            except Exception:
                log.exception("telling the jobs that %s exited", run.name)
        if not policy_restarts:
            run.wanted = False
            self._set(run, "failed" if info.code else "stopped",
                      f"exited ({info.words}); its restart policy is never" + run.last_lines())
            return None
        if loop:
            run.wanted = False
            self._set(run, "failed", f"crash loop: exited {len(recent)} times within "
                                     f"{self.settings.crash_loop_seconds:.0f} s ({info.words}); not restarting"
                      + run.last_lines())
            return None
        run.restarts += 1
        return 0.0 if len(recent) == 1 else float(min(2 ** (len(recent) - 2), 30))

    async def _stop(self, run: EntryRun, why: str) -> None:
        run.wanted, run.stopping = False, True
        task, run.task = run.task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if run.alive():
            self._set(run, "stopping", f"stopping (pid {run.pid})")
            code = await self._kill(run)
            run.last_exit = ExitInfo(code if code is not None else run.exit_code, time.time(), expected=True)
            self._note(run, f"{why}; exited ({run.last_exit.words})")
        run.pid, run.popen, run.adopted = None, None, False
        await asyncio.to_thread(self.records.drop, run.name)
        run.stopping = False
        if run.pending is not None:
            run.entry, run.pending = run.pending, None
        self._set(run, "stopped", why)

    async def _kill(self, run: EntryRun) -> int | None:
        if run.pid is None:
            return None
        code = await asyncio.to_thread(process.stop_tree, run.pid, run.entry.stop_grace, run.popen)
        if run.popen is None:  # adopted: no exit code to read; the tick sees it gone
            run.exited.set()
        else:  # the reaper thread hands the exit over a moment later
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(run.exited.wait(), 1.0)
        return code if code is not None else run.exit_code

    def _adopt(self, run: EntryRun, rec: process.Record) -> None:
        run.pid, run.create_time, run.popen, run.adopted = rec.pid, rec.create_time, None, True
        run.exited = asyncio.Event()
        try:
            run.log_pos = max(0, Path(rec.log).stat().st_size - 64 * 1024)
        except OSError:
            run.log_pos = 0
        run.log_path = Path(rec.log)
        self._note(run, f"adopted pid {rec.pid}, left running by an earlier Backlot")
        self._set(run, "starting", f"adopted pid {rec.pid}; checking that it answers")
        run.wanted = True
        run.task = self.keeper.spawn(f"launch {run.name}", self._supervise(run))

    async def _check_port(self, run: EntryRun) -> None:
        """Say which process holds a stopped entry's port (so a start would be refused), if one does."""
        if await asyncio.to_thread(process.port_in_use, run.entry.host, run.entry.port) and run.state == "stopped":
            await self._blocked(run)

    async def _blocked(self, run: EntryRun) -> None:
        """The entry's port is taken by a process Backlot did not start: name it, touch nothing."""
        holder = await asyncio.to_thread(process.port_holder, run.entry.port)
        run.holder = process.describe(holder) if holder is not None else "another program"
        self._set(run, "blocked", f"port {run.entry.port} is held by {run.holder}, which Backlot did not start; "
                                  "stop it, or give this entry another port")

    # ----- consoles and adopted processes -----
    async def _tick_loop(self) -> None:
        while True:
            for run in list(self.runs.values()):
                if run.pid is None:
                    continue
                lines = run.read_console()
                if lines:
                    self.bus.publish(LaunchOutput(run.name, lines))
                if run.adopted and not run.exited.is_set() and not process.alive(run.pid, run.create_time):
                    run.exit_code = None
                    run.exited.set()
            await asyncio.sleep(TICK)

    # ----- views -----
    def _note(self, run: EntryRun, text: str) -> None:
        """A line of Backlot's own, after what the process wrote so far (so "ready" follows its own last line)."""
        lines = (*run.read_console(), run.console.note(text))
        self.bus.publish(LaunchOutput(run.name, lines))

    def _set(self, run: EntryRun, state: str, message: str) -> None:
        run.state, run.message = state, message
        self._publish(run)

    def _publish(self, run: EntryRun) -> None:
        self.bus.publish(LaunchUpdated(run.view()))
