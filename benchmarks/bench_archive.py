"""Archive and restore throughput, with same-run baselines.

    python benchmarks/bench_archive.py [--messages 10000] [--backends sqlite,postgres]

On each backend a fresh store gets ``messages`` finished messages (created with
content, one failure, a resend, a delivery: 4 events each, written in batches of
1,000) and one unfinished message last. Then, in this order and each timed:

- *export* (the read baseline): ``export_history()`` of the whole store into a
  file, the audit trail a user could dump by hand;
- *archive*: ``service.archive(...)`` of every finished message (select, write,
  read back and verify, delete in chunks of 500);
- *restore*: ``service.restore(...)`` of the archive, read models caught up;
- *write* (the write baseline) is the population itself, in batches.

Figures are messages per second and the ratios archive/export and restore/write
(time over time: below 1 is faster than the baseline). One round: these runs take
seconds each, and the machine may be shared; compare ratios, not absolutes.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make `benchmarks.*` importable
    sys.path.insert(0, str(ROOT))

from msgstate import MessageService  # noqa: E402

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
BATCH = 1_000


def store_url(backend: str, directory: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{directory / 'archive-bench.db'}"
    from uuid import uuid4

    import psycopg

    base = os.environ.get("MSGSTATE_BENCH_POSTGRES_URL", DEFAULT_POSTGRES)
    schema = f"bench_archive_{uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    return f"{base}?schema={schema}"


def drop(url: str) -> None:
    if "schema=" not in url:
        return
    import psycopg

    base, schema = url.split("?schema=")
    with psycopg.connect(base, autocommit=True) as connection:
        connection.execute(f"DROP SCHEMA {schema} CASCADE")


def populate(service: MessageService, clock: list[datetime], messages: int) -> float:
    started = time.perf_counter()
    for start in range(0, messages, BATCH):
        with service.batch() as batch:
            for i in range(start, min(start + BATCH, messages)):
                m = f"bench-{i:07d}"
                batch.create(m, sender="alice", user_id="bob", content={"text": "hi"})
                batch.record_failure(m, code=6012)
                batch.resend(m)
                batch.record_delivery(m, seq=str(i))
        clock[0] += timedelta(milliseconds=1)
    elapsed = time.perf_counter() - started
    clock[0] += timedelta(days=1)
    service.create("still-open", sender="alice", user_id="bob")
    return elapsed


def run(backend: str, messages: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        directory = Path(folder)
        url = store_url(backend, directory)
        clock = [T0]
        service = MessageService.open(url, clock=lambda: clock[0])
        try:
            write = populate(service, clock, messages)
            service.catch_up_projections()
            started = time.perf_counter()
            with open(directory / "export.jsonl", "w", encoding="utf-8") as out:
                out.writelines(service.export_history())
            export = time.perf_counter() - started
            clock[0] += timedelta(days=1)

            started = time.perf_counter()
            report = service.archive(
                before=clock[0] - timedelta(hours=1), to=directory / "a.jsonl"
            )
            archive = time.perf_counter() - started
            assert report.archived == messages, report

            started = time.perf_counter()
            restored = service.restore(directory / "a.jsonl")
            restore = time.perf_counter() - started
            assert restored.restored == messages, restored
        finally:
            service.close()
            drop(url)
    return {
        "write_per_s": messages / write,
        "export_per_s": messages / export,
        "archive_per_s": messages / archive,
        "restore_per_s": messages / restore,
        "archive_vs_export": archive / export,
        "restore_vs_write": restore / write,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--backends", default="sqlite,postgres")
    args = parser.parse_args()
    print(f"{args.messages:,} finished messages (4 events each), one round")
    for backend in args.backends.split(","):
        figures = run(backend, args.messages)
        print(
            f"{backend:9} write {figures['write_per_s']:8,.0f}/s  "
            f"export {figures['export_per_s']:8,.0f}/s  "
            f"archive {figures['archive_per_s']:8,.0f}/s  "
            f"restore {figures['restore_per_s']:8,.0f}/s  "
            f"archive/export {figures['archive_vs_export']:.2f}  "
            f"restore/write {figures['restore_vs_write']:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
