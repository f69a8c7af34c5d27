"""A writer process for tests/test_faults.py: message lifecycles through outages.

``python -m tests.fault_writer URL WORKER COUNT LOG`` runs COUNT lifecycles
(create, a transient failure of attempt 1, a resend with a fixed request id, the
delivery of attempt 2) on messages ``w<WORKER>-<i>``. A step that raises
:class:`StorageError` is repeated with the same arguments until it is answered
(for up to ``STEP_DEADLINE`` seconds). Every answer and every error is a JSON
line in LOG, flushed at once, so a SIGKILLed run still leaves its record.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

from msgstate import MessageService, MessageView, StorageError

TRANSIENT_CODE = 6012  # ERR_REQUEST_TIME_OUT: TRANSIENT in the catalog
STEP_DEADLINE = 180.0
STEPS = ("create", "fail", "resend", "deliver")


def steps(service: MessageService, msg_id: str) -> list[tuple[str, Callable[[], Any]]]:
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
    url, worker, count, log_path = argv[0], int(argv[1]), int(argv[2]), argv[3]
    service = MessageService.open(url, projections="external")
    with open(log_path, "a", encoding="utf-8") as log:

        def write(record: dict[str, Any]) -> None:
            log.write(json.dumps(record) + "\n")
            log.flush()

        for i in range(count):
            msg_id = f"w{worker}-{i}"
            for step, command in steps(service, msg_id):
                deadline = time.monotonic() + STEP_DEADLINE
                while True:
                    began = time.monotonic()
                    try:
                        view: MessageView = command()
                    except StorageError as error:
                        write(
                            {
                                "msg_id": msg_id,
                                "step": step,
                                "error": error.code.name,
                                "seconds": time.monotonic() - began,
                            }
                        )
                        if time.monotonic() > deadline:
                            return 1
                        time.sleep(0.05)
                        continue
                    write(
                        {
                            "msg_id": msg_id,
                            "step": step,
                            "version": view.version,
                            "status": int(view.status),
                            "seconds": time.monotonic() - began,
                        }
                    )
                    break
    service.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
