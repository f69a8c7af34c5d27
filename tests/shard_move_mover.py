"""A mover process for tests/test_shard_move.py that can die at a chosen step.

``python -m tests.shard_move_mover MAP SHARD TO KILL_AT LOG [CHUNK]`` runs
:func:`msgstate.shards.move_shard` on the map file MAP. Each progress step is a
JSON line in LOG (flushed at once), after a ``{"step": "start"}`` line; when the
step named KILL_AT is reached (``copied``, ``frozen``, ``verified``, ``handed
over``, ``deleted``, ``map written``; ``-`` for none) the process SIGKILLs
itself right after logging it. A finished move logs ``{"report": {...}}``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from typing import Any

from msgstate.shards import move_shard


def main(argv: list[str]) -> int:
    map_path, shard, to, kill_at, log_path = argv[:5]
    chunk = int(argv[5]) if len(argv) > 5 else 2000
    with open(log_path, "a", encoding="utf-8") as log:

        def write(record: dict[str, Any]) -> None:
            log.write(json.dumps(record) + "\n")
            log.flush()

        def progress(step: str, count: int) -> None:
            write({"step": step, "n": count, "t": time.monotonic()})
            if step == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

        write({"step": "start", "t": time.monotonic()})
        report = move_shard(map_path, int(shard), to, chunk=chunk, progress=progress)
        write({"report": {"events": report.events, "streams": report.streams}})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
