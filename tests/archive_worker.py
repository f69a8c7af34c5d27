"""An archiving process for the crash test: ``python -m tests.archive_worker``.

Arguments: URL PATH BEFORE(ISO) LOG CHUNK. It runs ``service.archive`` and appends
every progress call to LOG as ``phase done total`` (flushed at once, so the test
can kill it at a chosen point), then ``finished`` and the report as JSON.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime

from msgstate import MessageService


def main(argv: list[str]) -> int:
    url, path, before, log_path, chunk = argv
    with open(log_path, "a", encoding="utf-8", buffering=1) as log:
        service = MessageService.open(url)
        log.write("opened 0 0\n")

        def progress(phase: str, done: int, total: int) -> None:
            log.write(f"{phase} {done} {total}\n")

        report = service.archive(
            before=datetime.fromisoformat(before),
            to=path,
            chunk=int(chunk),
            progress=progress,
        )
        log.write(f"finished {report.archived} {report.already}\n")
        service.close()
    print(json.dumps({"archived": report.archived, "kept": report.kept}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
