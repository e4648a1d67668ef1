"""``python -m backlot.standins KIND [options]``: run one stand-in backend, or ``all`` of them."""
from __future__ import annotations

import json
import os
import signal
import sys
import threading

from backlot.standins.launcher import (GRADIO3_KINDS, KINDS, MODULES, REPO_ROOT, StandinError, gradio3_python, start_many,
                               stop_all)

USAGE = f"usage: python -m backlot.standins {{{'|'.join(KINDS)}|all}} [--port N] [--speed F] [--data DIR] [kind options]"


def _run_all(argv: list[str]) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m backlot.standins all")
    ap.add_argument("--speed", type=float, default=1.0)
    ap.add_argument("--timeout", type=float, default=90.0)
    a = ap.parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        procs = start_many(KINDS, timeout=a.timeout, speed=a.speed)
    except StandinError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(json.dumps({"standins": {k: p.url for k, p in procs.items()}}), flush=True)
    try:
        while not stop.is_set():
            if any(not p.alive() for p in procs.values()):
                dead = [k for k, p in procs.items() if not p.alive()]
                print(f"stand-in(s) exited: {', '.join(dead)}", file=sys.stderr)
                return 1
            stop.wait(0.5)
    finally:
        stop_all(procs)
    return 0


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    kind, rest = argv[0], argv[1:]
    if kind == "all":
        return _run_all(rest)
    if kind not in MODULES:
        print(f"error: unknown stand-in {kind!r}\n{USAGE}", file=sys.stderr)
        return 2
    if kind in GRADIO3_KINDS:
        # RVC and AudioLDM run on Gradio 3.50, which cannot share an environment with current gradio.
        try:
            python = str(gradio3_python())
        except StandinError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
        os.execv(python, [python, "-m", MODULES[kind], *rest])
    import importlib

    module = importlib.import_module(MODULES[kind])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
