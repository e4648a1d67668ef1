"""The launch records (``<data>/launched.json``) survive entries that start or end at the same moment."""
from __future__ import annotations

import threading
from pathlib import Path

from backlot.services.launch.process import Record, Records


def test_records_written_from_several_threads_at_once_keep_every_change(tmp_path: Path) -> None:
    records = Records(tmp_path / "data" / "launched.json")
    names = [f"entry-{i}" for i in range(16)]
    failures: list[BaseException] = []
    go = threading.Barrier(len(names))

    def put(name: str) -> None:
        go.wait()  # all at once, as the launcher's worker threads do when several backends end together
        try:
            records.put(Record(name, 1000, 0.0, ["python"], "127.0.0.1", 8000, str(tmp_path / f"{name}.log")))
            if name.endswith(("1", "3")):
                records.drop(name)
        except BaseException as err:  # noqa: BLE001 - collected for the assertion
            failures.append(err)

    threads = [threading.Thread(target=put, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures
    assert sorted(records.load()) == sorted(n for n in names if not n.endswith(("1", "3")))
