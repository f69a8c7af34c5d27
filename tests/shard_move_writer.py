"""A writer process for tests/test_shard_move.py: lifecycles during a shard move.

``python -m tests.shard_move_writer MAP WORKER SHARD LOG STOP [MOVE_WAIT]`` opens
the map file MAP as ``shards:///MAP`` and, until the file STOP exists, runs
message lifecycles (create, a transient failure of attempt 1, a resend with a
fixed request id, the delivery of attempt 2), one step at a time, on a few
messages at once: every other step is on a message of the virtual shard SHARD
(the one being moved), the rest on messages of the other shards.

A step that raises (``ShardMoving`` after the service's own ``MOVE_WAIT``,
``ShardMoved``, ``StorageError``) is logged and repeated with the same arguments
(every step is idempotent) until it is answered. Every answer is a JSON line in
LOG, flushed at once: ``{"m": msg_id, "shard", "step", "v": version, "st":
status, "a": attempts, "seq", "t": wall-clock start, "dt": seconds until the
answer, "tries"}``; errors are ``{"m", "step", "err": code name, "dt"}``.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from collections.abc import Callable
from typing import Any

from msgstate import MessageService, MessageView, MsgStateError
from msgstate.shards import ShardedMessageService

TRANSIENT_CODE = 6012  # ERR_REQUEST_TIME_OUT: TRANSIENT in the catalog
ACTIVE = 3  # messages in progress per kind (moving shard / other shards)
RUN_LIMIT = 150.0  # seconds: a writer never outlives a broken test for long
PACE = 0.002  # seconds between steps: leave some CPU to the mover


def step_calls(
    service: MessageService, msg_id: str
) -> list[tuple[str, Callable[[], MessageView]]]:
    return [
        ("create", lambda: service.create(msg_id, sender="s", user_id="u")),
        (
            "fail",
            lambda: service.record_failure(msg_id, code=TRANSIENT_CODE, attempt=1),
        ),
        ("resend", lambda: service.resend(msg_id, request_id=f"{msg_id}-r2")),
        (
            "deliver",
            lambda: service.record_delivery(msg_id, seq=f"{msg_id}-seq", attempt=2),
        ),
    ]


def main(argv: list[str]) -> int:
    map_path, worker, shard = argv[0], int(argv[1]), int(argv[2])
    log_path, stop_path = argv[3], argv[4]
    move_wait = float(argv[5]) if len(argv) > 5 else 60.0
    service = ShardedMessageService.open(
        f"shards://{map_path}", projections="external", move_wait=move_wait
    )
    rng = random.Random(worker)
    started = time.monotonic()
    counter = 0
    # kind -> [msg_id, next step index]; kind True = the moving shard
    active: dict[bool, list[list[Any]]] = {True: [], False: []}

    def new_id(moving: bool) -> str:
        nonlocal counter
        while True:
            counter += 1
            msg_id = f"w{worker}-{counter}"
            if (service.shard(msg_id) == shard) == moving:
                return msg_id

    with open(log_path, "a", encoding="utf-8") as log:

        def write(record: dict[str, Any]) -> None:
            log.write(json.dumps(record) + "\n")
            log.flush()

        turn = 0
        while not os.path.exists(stop_path):
            if time.monotonic() - started > RUN_LIMIT:
                return 3
            moving = turn % 2 == 0
            turn += 1
            pool = active[moving]
            if len(pool) < ACTIVE:
                pool.append([new_id(moving), 0])
            entry = pool[rng.randrange(len(pool))]
            msg_id, index = entry
            step, call = step_calls(service, msg_id)[index]
            began, wall, tries = time.monotonic(), time.time(), 0
            while True:
                tries += 1
                try:
                    view = call()
                except MsgStateError as error:
                    write(
                        {
                            "m": msg_id,
                            "step": step,
                            "err": error.code.name,
                            "dt": time.monotonic() - began,
                        }
                    )
                    if time.monotonic() - started > RUN_LIMIT:
                        return 2
                    time.sleep(0.05)
                    continue
                break
            write(
                {
                    "m": msg_id,
                    "shard": service.shard(msg_id),
                    "step": step,
                    "v": view.version,
                    "st": int(view.status),
                    "a": view.attempts,
                    "seq": view.seq,
                    "t": wall,
                    "dt": time.monotonic() - began,
                    "tries": tries,
                }
            )
            entry[1] += 1
            if entry[1] == 4:
                pool.remove(entry)
            time.sleep(PACE)
        write({"done": True})
    service.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
