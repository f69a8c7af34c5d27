"""The projection runner follows every database of a shard map."""

from __future__ import annotations

import threading
from pathlib import Path

from msgstate import MessageService, MessageStatus
from msgstate.runner import run_projections
from tests import shardpg


def test_one_runner_keeps_every_database_of_a_map(tmp_path: Path) -> None:
    path = shardpg.fresh_map(tmp_path)
    url = f"shards://{path}"
    stop, ready = threading.Event(), threading.Event()
    runner = threading.Thread(
        target=run_projections, args=(url,), kwargs={"stop": stop, "ready": ready}
    )
    runner.start()
    try:
        assert ready.wait(30)
        service = MessageService.open(url, projections="external")
        for i in range(60):
            service.create(f"r{i}", sender="s", user_id="u")
        service.wait_for_projections(timeout=30)
        used = {
            u
            for u, db in service.databases.items()
            if db.status_counts()[MessageStatus.SENDING]
        }
        assert service.status_counts()[MessageStatus.SENDING] == 60
        assert len(used) == 3  # every database's read model was kept
        service.close()
    finally:
        stop.set()
        runner.join(30)
    assert not runner.is_alive()
