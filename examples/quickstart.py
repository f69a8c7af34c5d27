"""msgstate in one screen: a send fails, the policy allows a resend, it is delivered.

Run it with ``python examples/quickstart.py``; it stores its events in the SQLite
file ``quickstart.db`` in the current directory (made afresh on every run).
"""

from __future__ import annotations

import json
from pathlib import Path

from msgstate import MessageService, ResendPolicy

DB = Path("quickstart.db")


def main() -> None:
    for leftover in (DB, Path(f"{DB}-wal"), Path(f"{DB}-shm")):
        leftover.unlink(missing_ok=True)
    service = MessageService.open(
        f"sqlite:///{DB}", policy=ResendPolicy(max_attempts=3)
    )

    # The backend's transport starts sending; msgstate records attempt 1.
    service.create("msg-1", sender="alice", user_id="bob", content={"text": "hi"})

    # The transport reports error 6012 (request timeout): a TRANSIENT error.
    failed = service.record_failure("msg-1", code=6012, desc="request timeout")
    print(f"after the failure: {failed.status.name}, class {failed.last_error_class}")

    # May we resend? The policy says yes; the same request_id twice resends once.
    print(f"check_resend: {service.check_resend('msg-1').desc}")
    service.resend("msg-1", request_id="req-1", actor="user")
    resent = service.resend("msg-1", request_id="req-1", actor="user")
    print(f"after the resend: {resent.status.name}, attempt {resent.attempts}")

    # The server acknowledges attempt 2.
    done = service.record_delivery("msg-1", seq="1001")
    print(f"final status: {done.status.name} ({int(done.status)}), seq {done.seq}")

    print("history:")
    for entry in service.history("msg-1"):
        when = entry.recorded_at.strftime("%H:%M:%S")
        data = json.dumps(entry.data, default=str)
        print(f"  v{entry.version} {when} {entry.event:<15} #{entry.attempt} {data}")
    service.close()


if __name__ == "__main__":
    main()
