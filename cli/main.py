"""Backlot's command line: the parser, the dispatch to the command modules, refusals and exit codes."""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
from typing import TYPE_CHECKING, Any, TextIO

from backlot.cli.refusal import Refusal, report
from backlot.services import __version__

if TYPE_CHECKING:
    from collections.abc import Callable

    from backlot.services.config import Settings

    Commands = argparse._SubParsersAction["_CommandParser"]  # what a command's parser is added to
# Only the standard library loads before the window is on screen: everything else is imported where it is used.


def _columns() -> int:
    """``shutil.get_terminal_size().columns``: COLUMNS, else the terminal's width, else 80."""
    try:
        columns = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        columns = 0
    if columns > 0:
        return columns
    stdout = sys.__stdout__
    try:
        columns = os.get_terminal_size(stdout.fileno()).columns if stdout is not None else 0
    except (ValueError, OSError):  # not a terminal
        columns = 0
    return columns or 80


class _Formatter(argparse.HelpFormatter):
    """argparse's help layout at the width it would pick, found without importing ``shutil``.

    argparse makes a formatter for every argument it adds, and its first one imports ``shutil`` (and with it zlib, bz2
    and lzma) for the terminal's width: a few milliseconds of every command's start, the thin client's included.
    """

    def __init__(self, prog: str, **kwargs: Any) -> None:
        kwargs.setdefault("width", _columns() - 2)  # argparse's own margin
        super().__init__(prog, **kwargs)


class _Parser(argparse.ArgumentParser):
    """Backlot's parsers: argparse's, with its help layout found faster (``_Formatter``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)


class _CommandParser(_Parser):
    """A command's parser: arguments it does not know are its own error, shown with its own usage.

    (argparse leaves them to the top-level parser, whose usage says nothing about the command.)
    """

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> tuple[argparse.Namespace, list[str]]:
        parsed, extra = super().parse_known_args(args, namespace)
        if extra:
            self.error(f"unrecognized arguments: {' '.join(extra)}")
        return parsed, extra


LOG_LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR"]
# The top-level options (besides -h/--help): the word after one that takes a value is that value, not the command.
_TAKE_A_VALUE = ("--home", "--screenshot", "--api-port", "--log-level")
_FLAGS = ("--version", "--headless", "--install-desktop-entry")


def _top_level() -> argparse.ArgumentParser:
    """The parser of the top-level options, no command yet."""
    ap = _Parser(prog="backlot", description="Backlot: control center for AI film-making backends.")
    ap.add_argument("--version", action="version", version=f"backlot {__version__}")
    ap.add_argument("--home", metavar="DIR", help="keep config, data and the API token in DIR (env BACKLOT_HOME)")
    ap.add_argument("--headless", action="store_true", help="run the core without a window until SIGINT/SIGTERM")
    ap.add_argument("--screenshot", metavar="PATH", help="start the window, save a PNG of it to PATH and exit")
    ap.add_argument("--install-desktop-entry", action="store_true",
                    help="put Backlot in this user's application menu (a .desktop file and its icon) and exit")
    ap.add_argument("--api-port", type=int, help="socket API port (default 8770)")
    ap.add_argument("--log-level", choices=LOG_LEVELS, help="logging detail")
    return ap


def _discover(sub: Commands) -> argparse.ArgumentParser:
    d = sub.add_parser("discover", help="find backends on this machine and configured hosts")
    d.add_argument("--json", action="store_true")
    d.add_argument("--hosts", help="comma-separated extra hosts")
    d.add_argument("--url", action="append", help="a service URL to probe (repeatable)")
    d.add_argument("--budget", type=float, help="seconds for the whole discovery")
    return d


def _status(sub: Commands) -> argparse.ArgumentParser:
    st = sub.add_parser("status", help="show services, jobs and launch entries of the running Backlot (exit 4: not "
                                       "running)")
    st.add_argument("--json", action="store_true")
    return st


def _submit(sub: Commands) -> argparse.ArgumentParser:
    s = sub.add_parser("submit", help="submit a generation job")
    s.add_argument("--task", required=True)
    s.add_argument("--prompt", default="", help="what to make (needed by most tasks; `backlot tasks` says which)")
    s.add_argument("--param", action="append", default=[], metavar="K=V")
    s.add_argument("--input", action="append", default=[], metavar="FILE", help="input file (repeatable)")
    s.add_argument("--backend", help="service id to pin, e.g. comfyui@127.0.0.1:8188 (default: auto)")
    s.add_argument("--wait", action="store_true", help="follow the job to its end (Ctrl-C detaches; it keeps running)")
    s.add_argument("--json", action="store_true", help="print the accepted (or, with --wait, finished) job as JSON")
    return s


def _tasks(sub: Commands) -> argparse.ArgumentParser:
    t = sub.add_parser("tasks", help="list the tasks with their parameters, inputs and backends")
    t.add_argument("--json", action="store_true", help="print the task schema as JSON")
    return t


def _jobs(sub: Commands) -> argparse.ArgumentParser:
    j = sub.add_parser("jobs", help="list job history")
    j.add_argument("--state", choices=["queued", "running", "succeeded", "failed", "cancelled", "interrupted"])
    j.add_argument("--json", action="store_true")
    j.add_argument("--limit", type=int, default=50)
    return j


def _show(sub: Commands) -> argparse.ArgumentParser:
    sh = sub.add_parser("show", help="one job in full: route, attempts, error, outputs (a text job's text)")
    sh.add_argument("job", metavar="N|ID")
    sh.add_argument("--json", action="store_true")
    return sh


def _cancel(sub: Commands) -> argparse.ArgumentParser:
    c = sub.add_parser("cancel", help="stop a job (queued: removed; running: the backend's interrupt)")
    c.add_argument("job", metavar="N|ID")
    c.add_argument("--json", action="store_true", help="print the job as JSON")
    return c


def _retry(sub: Commands) -> argparse.ArgumentParser:
    r = sub.add_parser("retry", help="run a job again as a new job (same task, prompt, parameters and inputs)")
    r.add_argument("job", metavar="N|ID")
    r.add_argument("--wait", action="store_true", help="follow the new job to its end (Ctrl-C detaches)")
    r.add_argument("--json", action="store_true", help="print the new (or, with --wait, finished) job as JSON")
    return r


def _stop(sub: Commands) -> argparse.ArgumentParser:
    sp = sub.add_parser("stop", help="stop launch entries; no NAME: the running Backlot (and what it launched)")
    sp.add_argument("names", nargs="*", metavar="NAME")
    sp.add_argument("--json", action="store_true", help="print the stopped entries as JSON")
    return sp


def _start(sub: Commands, verb: str = "start", what: str = "start") -> argparse.ArgumentParser:
    ls = sub.add_parser(verb, help=f"{what} launch entries (backends Backlot runs) and wait until they answer")
    ls.add_argument("names", nargs="+", metavar="NAME")
    ls.add_argument("--no-wait", action="store_true", help="return once spawned, not once answering")
    ls.add_argument("--json", action="store_true", help="print the entries as JSON")
    return ls


def _restart(sub: Commands) -> argparse.ArgumentParser:
    ls = _start(sub, "restart", "stop and start again")
    ls.add_argument("--mcp", action="store_true", help="a Wan2GP web UI comes back with its MCP server")
    return ls


def _logs(sub: Commands) -> argparse.ArgumentParser:
    lg = sub.add_parser("logs", help="a launch entry's console (-f: follow it until Ctrl-C)")
    lg.add_argument("name", metavar="NAME")
    lg.add_argument("-f", "--follow", action="store_true", help="print new lines as they come")
    lg.add_argument("-n", "--lines", type=int, default=100, metavar="N", help="the last N lines first (default 100)")
    return lg


def _add_backend(sub: Commands) -> argparse.ArgumentParser:
    ab = sub.add_parser("add-backend", help="add a launch entry for a checkout (ComfyUI, Wan2GP, …) to config.toml")
    ab.add_argument("folder", metavar="FOLDER")
    ab.add_argument("--name", help="the entry's name (default: the kind's)")
    ab.add_argument("--kind", help="comfyui, wan2gp, rvc, audioldm, llama.cpp or ollama (default: detected)")
    ab.add_argument("--with-backlot", action="store_true", help="start it with Backlot (default: on demand)")
    return ab


def _addon(sub: Commands) -> argparse.ArgumentParser:
    ad = sub.add_parser("addon", help="write the installable Blender addon zip")
    ad.add_argument("--output", metavar="PATH", help="zip file or folder (default ./backlot_addon.zip)")
    return ad


def _workflows(sub: Commands) -> argparse.ArgumentParser:
    from backlot.cli.workflow_args import add_parser

    return add_parser(sub)


def _demo(sub: Commands) -> argparse.ArgumentParser:
    demo = sub.add_parser("demo", help="run Backlot on built-in stand-in backends")
    demo.add_argument("--headless", action="store_true", help="no window: run the stand-ins and print their URLs")
    demo.add_argument("--speed", type=float, default=1.0, help="stand-in time scale (2 = twice as fast)")
    return demo


# Every command: its name and the function that adds its parser, in the order `backlot --help` lists them. A new
# command is one function and one line here, and its branch in `_main` (or its name in CLIENT_COMMANDS).
COMMANDS: dict[str, Callable[[Commands], argparse.ArgumentParser]] = {
    "discover": _discover, "status": _status, "submit": _submit, "tasks": _tasks, "jobs": _jobs, "show": _show,
    "cancel": _cancel, "retry": _retry, "stop": _stop, "start": _start, "restart": _restart, "logs": _logs,
    "add-backend": _add_backend, "addon": _addon, "workflows": _workflows, "demo": _demo,
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser with every command (exposed for tests and --help); ``only``: with that command alone."""
    ap = _top_level()
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", parser_class=_CommandParser)
    for name, add in COMMANDS.items():
        if only is None or name == only:
            command = add(sub)
            # `backlot jobs --home X` works as well as `backlot --home X jobs`
            command.add_argument("--home", metavar="DIR", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
            command.add_argument("--log-level", choices=LOG_LEVELS, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return ap


def command_named(argv: list[str]) -> str | None:
    """The command ``argv`` names: its first word that is neither a top-level option nor such an option's value.

    None where that takes the whole parser to tell (``-h``, ``--``, an abbreviated or unknown option, an unknown
    command, no command): the whole parser then parses, so help and errors read as they always have.
    """
    words = iter(argv)
    for word in words:
        if not word.startswith("-"):
            return word if word in COMMANDS else None
        if word in _TAKE_A_VALUE:
            next(words, None)  # its value
        elif word not in _FLAGS and word.partition("=")[0] not in _TAKE_A_VALUE:
            return None
    return None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """``argv`` parsed by a parser holding only the command it names: the same namespace, help and errors as
    ``build_parser().parse_args(argv)``, without building a dozen parsers for one (milliseconds of every command)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    return build_parser(command_named(argv)).parse_args(argv)


def _cli_overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {"api_port": args.api_port, "log_level": args.log_level}
    return overrides


def _split(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


# Libraries that log every request at INFO: a person reads Backlot's own lines unless they ask for DEBUG.
CHATTY_LOGGERS = ("httpx", "httpcore", "mcp", "aiohttp", "litellm", "LiteLLM", "gradio_client", "urllib3", "asyncio")


def _setup_logging(settings: Settings) -> None:
    log_to_stderr(settings.log_level)


def log_to_stderr(level: str) -> None:
    """Log to stderr at ``level`` (only Backlot's own lines below WARNING, unless DEBUG)."""
    import logging  # not at the top: the thin client's commands log nothing unless the core loads (or DEBUG/INFO)

    logging.basicConfig(level=getattr(logging, level, logging.INFO), stream=sys.stderr,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if level != "DEBUG":
        for name in CHATTY_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit code (2 bad usage or setup, 130 interrupted)."""
    args = parse_args(argv)  # --help and --version print to stdout, as they should
    out = sys.stdout
    as_json = bool(getattr(args, "json", False))  # a refusal goes on stdout too, for scripts reading --json
    try:
        # stdout carries only the command's own output (``--json``); anything a library prints goes to stderr.
        with contextlib.redirect_stdout(sys.stderr):
            return _main(args, out)
    except Refusal as err:
        return report(err, as_json, out)
    except KeyboardInterrupt:
        print("backlot: interrupted", file=sys.stderr)
        return 130
    except _setup_errors() as err:  # evaluated only when something was raised: the imports cost nothing before
        return report(Refusal(str(err), 2), as_json, out)
    except OSError as err:  # a folder Backlot must write to is read-only, full or in the way
        where = f" {err.filename}" if err.filename else ""
        return report(Refusal(f"cannot use{where}: {err.strerror or err}", 2), as_json, out)


def _setup_errors() -> tuple[type[Exception], ...]:
    """The errors of a home, store, API port or token that cannot be used: one sentence, exit 2."""
    from backlot.services.api.server import ApiStartError
    from backlot.services.api.token import TokenError
    from backlot.services.application.errors import StoreError
    from backlot.services.instance import FolderError

    return FolderError, StoreError, ApiStartError, TokenError


def _window_first(args: argparse.Namespace) -> bool:
    """The plain window path (``backlot``, ``backlot demo``) with a display: the window shows before the rest loads."""
    plain = args.command is None or args.command == "demo" and args.speed > 0  # a bad --speed is refused first
    if not plain or args.headless or args.screenshot:
        return False  # the commands never load Qt
    from backlot.app.early import has_display

    return has_display()


def _main(args: argparse.Namespace, out: TextIO) -> int:
    if args.install_desktop_entry:
        from backlot.cli.desktop import install

        return install(out, args.home)
    if args.command in CLIENT_COMMANDS:  # the thin client: no settings, no core, unless it must start an instance
        return _client_command(args, out)
    if _window_first(args):
        from backlot.app.collector import paused
        from backlot.app.early import shown_shell
        from backlot.services.paths import Paths

        home = args.home if args.home is not None else os.environ.get("BACKLOT_HOME")
        # no automatic garbage collection: the window's collector takes over (app/collector.py)
        with paused(), shown_shell(str(Paths.resolve(home).window_file)) as window:
            return _run(args, out, window)
    return _run(args, out, None)


def _run(args: argparse.Namespace, out: TextIO, window: Any) -> int:
    """Load the settings and run the command (``window``: the plain window path's window, already shown)."""
    from backlot.services.config import ConfigError, load_settings

    try:
        settings = load_settings(home=args.home, cli=_cli_overrides(args))
    except ConfigError as err:
        raise Refusal(f"configuration error: {err}", 2) from err
    _setup_logging(settings)
    if args.command == "discover" and args.budget is not None and not args.budget > 0:
        print("backlot: --budget must be greater than 0", file=sys.stderr)
        return 2
    if args.command == "demo":
        if not args.speed > 0:
            print("backlot: --speed must be greater than 0", file=sys.stderr)
            return 2
        if not args.headless:
            return _window(settings, demo=True, speed=args.speed, screenshot=args.screenshot, window=window)
        from backlot.cli.demo import run_headless

        return run_headless(settings, out=out, speed=args.speed)
    if args.command == "tasks":
        from backlot.cli import commands

        return commands.tasks(settings, args.json, out)
    if args.command == "workflows":
        from backlot.cli import workflows

        return workflows.run(args, settings, out)
    if args.screenshot:
        return _window(settings, screenshot=args.screenshot)
    if args.command == "discover" or args.headless:
        import asyncio

        from backlot.cli import commands

        if args.command == "discover":
            work = commands.discover(settings, _split(args.hosts), args.url or [], args.budget, args.json, out)
        else:
            work = commands.serve(settings)
        return asyncio.run(work)
    return _window(settings, window=window)


def _window(settings: Settings, demo: bool = False, speed: float = 1.0, screenshot: str | None = None,
            window: Any = None) -> int:
    """Open the window; without a display say so in one line (``--screenshot`` needs none: it draws offscreen)."""
    from backlot.app.early import has_display
    from backlot.app.launch import run_window

    if not screenshot and not has_display():
        print("backlot: no display ($DISPLAY and $WAYLAND_DISPLAY are unset); run `backlot --headless`, "
              "`backlot demo --headless`, or `backlot --screenshot PATH`", file=sys.stderr)
        return 2
    return run_window(settings, demo=demo, speed=speed, screenshot=screenshot, window=window)


CLIENT_COMMANDS = ("status", "submit", "jobs", "show", "cancel", "retry", "stop", "addon", "start", "restart", "logs",
                   "add-backend")
LAUNCH_COMMANDS = ("start", "stop", "restart", "logs", "add-backend")


def _client_command(args: argparse.Namespace, out: TextIO) -> int:
    """Commands served by the running instance through the socket API (jobs/show fall back to the store).

    The instance checks each job (parameters, workflow, prompt, inputs) and refuses with the sentence and
    exit code (2 bad input, 3 no backend) the command prints.
    """
    from backlot.cli import client_commands as cc
    from backlot.cli.remote import Home

    level = (args.log_level or os.environ.get("BACKLOT_LOG_LEVEL") or "WARNING").upper()
    if level not in ("WARNING", "ERROR"):
        log_to_stderr(level)  # the client's own lines (which instance serves the home); else when the core loads
    home = Home(args.home, _cli_overrides(args), level)
    if args.command == "submit":
        params = cc.parse_params(args.param)
        return cc.submit(home, args.task, args.prompt, params, [str(p) for p in args.input], args.backend, args.wait,
                         args.json, out)
    if args.command == "retry":
        return cc.retry(home, args.job, args.wait, args.json, out)
    if args.command == "cancel":
        return cc.cancel(home, args.job, args.json, out)
    if args.command == "jobs":
        return cc.jobs(home, args.state, args.json, args.limit, out)
    if args.command == "show":
        return cc.show(home, args.job, args.json, out)
    if args.command == "status":
        return cc.status(home, args.json, out)
    if args.command in LAUNCH_COMMANDS:
        from backlot.cli import launch_commands

        return launch_commands.run(args, home, out)
    return cc.addon(args.output, out)


if __name__ == "__main__":
    sys.exit(main())
