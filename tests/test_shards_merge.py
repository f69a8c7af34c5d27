"""Merged pages stay exact while a shard's copy sits in two databases."""

from __future__ import annotations

from pathlib import Path

import pytest

from msgstate import MessageService, ShardMap, move_shard
from tests import shardpg

DEAD_CODE = 80001  # a content refusal: never resent, so a dead letter at once


class Crash(Exception):
    """The mover dying after a step."""


def stop_after(step: str) -> object:
    def progress(reached: str, _count: int) -> None:
        if reached == step:
            raise Crash(step)

    return progress


@pytest.mark.parametrize("step", ["copied", "map written"])
def test_dead_letters_pages_are_full_while_a_shard_is_in_two_databases(
    tmp_path: Path, step: str
) -> None:
    path = shardpg.fresh_map(tmp_path, count=2, virtual_shards=2)
    service = MessageService.open(f"shards://{path}")
    moving = [m for m in (f"a{i:03d}" for i in range(200)) if service.shard(m) == 0]
    staying = [f"z{i:03d}" for i in range(200) if service.shard(f"z{i:03d}") == 1]
    for msg_id in moving[:30] + staying[:30]:
        service.create(msg_id, sender="s", user_id="u")
        service.record_failure(msg_id, code=DEAD_CODE)
    expected = sorted(moving[:30] + staying[:30])
    target = ShardMap.load(path).database_of(1)
    with pytest.raises(Crash):
        # Stopped with the shard's copy in both databases: the "a" rows now
        # also sort first in the other database's read model.
        move_shard(path, 0, target, progress=stop_after(step))  # type: ignore[arg-type]
    service.catch_up_projections()
    first = [d.msg_id for d in service.dead_letters(limit=30)]
    pages: list[str] = []
    after = None
    while page := service.dead_letters(limit=7, after=after):
        pages.extend(d.msg_id for d in page)
        after = page[-1].msg_id
    assert expected[:30] == first
    assert expected == pages
    assert 60 == sum(service.status_counts().values())
    service.close()
