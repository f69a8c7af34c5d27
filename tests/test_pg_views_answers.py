"""The PostgreSQL read model's tracking methods and ``apply``, by their answers.

``PostgresMessageViews`` wraps eventsourcing's ``insert_tracking``,
``max_tracking_id`` and ``has_tracking_id`` with msgstate's retries (a lost
connection is retried once, at once); ``apply`` skips the changes at or below
the tracked notification. Checked through a service's views and the runner's
path (``MessageViewsProjection``, the views' ``wait``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError, OperationalError, Tracking
from eventsourcing.postgres import PostgresTrackingRecorder

from msgstate import MessageService, MessageStatus
from msgstate.projections import MessageViews, MessageViewsProjection, ViewChange
from tests import pg

NAME = "answers"  # not the service's own tracking name
TIMEOUT = 6012
SENDING = int(MessageStatus.SENDING)
SEND_FAIL = int(MessageStatus.SEND_FAIL)
SUCC = int(MessageStatus.SEND_SUCC)


@pytest.fixture
def service() -> Iterator[MessageService]:
    service = MessageService.open(pg.fresh_url(), projections="external")
    try:
        yield service
    finally:
        service.close()


@pytest.fixture
def views(service: MessageService) -> MessageViews:
    return service._views


def lost() -> Exception:
    """eventsourcing's error for a connection the server dropped."""
    try:
        raise OperationalError("lost") from psycopg.OperationalError(
            "server closed the connection unexpectedly"
        )
    except OperationalError as error:
        return error


class Flaky:
    """eventsourcing's undecorated method, after ``failures`` lost connections."""

    def __init__(self, method: Callable[..., Any], failures: int) -> None:
        self.method = method
        self.failures = failures
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((args, kwargs))
        if len(self.calls) <= self.failures:
            raise lost()
        return self.method(*args, **kwargs)


def flaky(monkeypatch: pytest.MonkeyPatch, name: str, failures: int) -> Flaky:
    """Make eventsourcing's ``name`` (what msgstate calls, undecorated) flaky."""
    decorated = getattr(PostgresTrackingRecorder, name)
    fake = Flaky(decorated.__wrapped__, failures)
    monkeypatch.setattr(decorated, "__wrapped__", fake)
    return fake


# -- insert_tracking --


def test_insert_tracking_by_position_and_by_keyword(views: MessageViews) -> None:
    assert views.max_tracking_id(NAME) is None
    assert views.insert_tracking(Tracking(NAME, 3)) is None
    assert 3 == views.max_tracking_id(NAME)
    assert views.insert_tracking(tracking=Tracking(NAME, 5)) is None
    assert 5 == views.max_tracking_id(NAME)
    with pytest.raises(IntegrityError):
        views.insert_tracking(Tracking(NAME, 4))  # never backwards
    assert 5 == views.max_tracking_id(NAME)


def test_insert_tracking_retries_a_lost_connection_once(
    views: MessageViews, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = flaky(monkeypatch, "insert_tracking", failures=1)
    tracking = Tracking(NAME, 7)
    assert views.insert_tracking(tracking) is None
    assert [((views, tracking), {}), ((views, tracking), {})] == fake.calls
    assert 7 == views.max_tracking_id(NAME)


def test_insert_tracking_raises_a_connection_lost_twice(
    views: MessageViews, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = flaky(monkeypatch, "insert_tracking", failures=2)
    with pytest.raises(OperationalError):
        views.insert_tracking(tracking=Tracking(NAME, 7))
    assert [((views,), {"tracking": Tracking(NAME, 7)})] * 2 == fake.calls
    assert views.max_tracking_id(NAME) is None


# -- has_tracking_id and max_tracking_id --


def test_has_tracking_id_answers(views: MessageViews) -> None:
    assert views.has_tracking_id(NAME, None) is True
    assert views.has_tracking_id(NAME, 1) is False
    views.insert_tracking(Tracking(NAME, 3))
    assert views.has_tracking_id(NAME, 2) is True
    assert views.has_tracking_id(NAME, 3) is True
    assert views.has_tracking_id(NAME, 4) is False
    assert views.has_tracking_id("other", 1) is False
    assert views.has_tracking_id(application_name=NAME, notification_id=3) is True
    assert views.has_tracking_id(application_name=NAME, notification_id=4) is False


def test_has_tracking_id_retries_a_lost_connection_once(
    views: MessageViews, monkeypatch: pytest.MonkeyPatch
) -> None:
    views.insert_tracking(Tracking(NAME, 3))
    fake = flaky(monkeypatch, "has_tracking_id", failures=1)
    assert views.has_tracking_id(NAME, 3) is True
    assert [((views, NAME, 3), {})] * 2 == fake.calls
    fake.calls.clear()
    kwargs: dict[str, Any] = {"application_name": NAME, "notification_id": 4}
    assert views.has_tracking_id(**kwargs) is False
    assert [((views,), kwargs)] * 2 == fake.calls


def test_has_tracking_id_raises_a_connection_lost_twice(
    views: MessageViews, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = flaky(monkeypatch, "has_tracking_id", failures=2)
    with pytest.raises(OperationalError):
        views.has_tracking_id(NAME, 1)
    assert 2 == len(fake.calls)


def test_max_tracking_id_retries_a_lost_connection_once(
    views: MessageViews, monkeypatch: pytest.MonkeyPatch
) -> None:
    views.insert_tracking(Tracking(NAME, 3))
    fake = flaky(monkeypatch, "max_tracking_id", failures=1)
    assert 3 == views.max_tracking_id(NAME)
    assert 3 == views.max_tracking_id(application_name=NAME)
    assert [
        ((views, NAME), {}),
        ((views, NAME), {}),
        ((views,), {"application_name": NAME}),
    ] == fake.calls


# -- the runner's path: MessageViewsProjection, the views' wait --


def test_the_projection_tracks_events_it_ignores_and_applies_once(
    service: MessageService, views: MessageViews
) -> None:
    service.create("m1", sender="alice", user_id="bob")
    (notification,) = service.recorder.select_notifications(start=1, limit=10)
    created = service.mapper.to_domain_event(notification)
    projection = MessageViewsProjection(views)
    first = notification.id
    projection.process_event(created, Tracking(NAME, first))
    assert {SENDING: 1} == views.status_counts()
    views.wait(NAME, first, timeout=1)
    projection.process_event(object(), Tracking(NAME, first + 1))  # not a message's
    assert first + 1 == views.max_tracking_id(NAME)
    views.wait(NAME, first + 1, timeout=1)
    with pytest.raises(TimeoutError):
        views.wait(NAME, first + 2, timeout=0.05)
    projection.process_event(created, Tracking(NAME, first))  # again: skipped
    assert {SENDING: 1} == views.status_counts()
    assert first + 1 == views.max_tracking_id(NAME)


def test_the_projection_takes_a_retried_tracking_insert_that_had_committed(
    views: MessageViews, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reply of a committed insert was lost and its retry conflicted: the
    event is tracked, so the runner goes on; a conflict with nothing tracked
    still raises."""
    insert = views.insert_tracking

    def committed_then_conflict(tracking: Tracking) -> None:
        insert(tracking)
        raise IntegrityError("duplicate key value (the retry)")

    monkeypatch.setattr(views, "insert_tracking", committed_then_conflict)
    projection = MessageViewsProjection(views)
    projection.process_event(object(), Tracking(NAME, 5))
    assert 5 == views.max_tracking_id(NAME)

    def conflict(tracking: Tracking) -> None:
        raise IntegrityError("duplicate key value")

    monkeypatch.setattr(views, "insert_tracking", conflict)
    with pytest.raises(IntegrityError):
        projection.process_event(object(), Tracking(NAME, 6))
    assert 5 == views.max_tracking_id(NAME)


# -- apply --


def changes(aid: UUID) -> list[ViewChange]:
    """A message created (1), failed (2), delivered (3)."""
    return [
        ViewChange(
            1,
            aid,
            {
                "msg_id": "m1",
                "status": SENDING,
                "attempts": 1,
                "last_error_code": None,
                "failed_at": None,
                "retry_after": None,
                "jitter_u": None,
                "created_at": 10.0,
                "online_user_only": 0,
                "updated_at": 10.0,
            },
        ),
        ViewChange(
            2,
            aid,
            {
                "status": SEND_FAIL,
                "last_error_code": TIMEOUT,
                "failed_at": 20.0,
                "retry_after": None,
                "jitter_u": 0.5,
                "updated_at": 20.0,
            },
        ),
        ViewChange(3, aid, {"status": SUCC, "updated_at": 30.0}),
    ]


def test_apply_of_nothing_applies_nothing(views: MessageViews) -> None:
    assert 0 == views.apply([], NAME)
    assert views.max_tracking_id(NAME) is None
    assert {} == views.status_counts()


def test_apply_twice_applies_once(views: MessageViews) -> None:
    created, failed, _ = changes(uuid4())
    assert 2 == views.apply([created, failed], NAME)
    assert 0 == views.apply([created, failed], NAME)
    assert 0 == views.apply([failed], NAME)  # the tracked notification itself
    assert 0 == views.apply([created], NAME)
    assert 0 == views.apply([], NAME)
    assert {SEND_FAIL: 1} == views.status_counts()
    assert {TIMEOUT: 1} == views.error_code_counts()
    assert 2 == views.max_tracking_id(NAME)


def test_apply_skips_what_was_applied_and_applies_the_rest(
    views: MessageViews,
) -> None:
    created, failed, delivered = changes(uuid4())
    assert 1 == views.apply([created], NAME)
    assert {SENDING: 1} == views.status_counts()
    assert 2 == views.apply([created, failed, delivered], NAME)
    assert {SUCC: 1} == views.status_counts()
    assert 3 == views.max_tracking_id(NAME)


def test_apply_goes_on_from_a_tracking_inserted_beside_it(
    views: MessageViews,
) -> None:
    """Tracking recorded by insert_tracking (an ignored event) is what apply skips."""
    created, failed, delivered = changes(uuid4())
    views.insert_tracking(Tracking(NAME, 1))
    assert 2 == views.apply([created, failed, delivered], NAME)
    assert {SUCC: 1} == views.status_counts()
    assert 3 == views.max_tracking_id(NAME)


# -- the tables and indexes, as docs/storage.md and the class name them --


def test_the_views_table_and_its_indexes_have_their_documented_names(
    service: MessageService, views: MessageViews
) -> None:
    schema = service.recorder.datastore.schema  # type: ignore[attr-defined]
    service.create("m1", sender="alice", user_id="bob")
    assert 1 == service.catch_up_projections()
    assert 1 == service.status_counts()[MessageStatus.SENDING]
    with psycopg.connect(pg.BASE_URL) as connection:
        tables = {
            row[0]
            for row in connection.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = %s",
                (schema,),
            )
        }
        indexes = {
            row[0]
            for row in connection.execute(
                "SELECT indexname FROM pg_indexes "
                "WHERE schemaname = %s AND tablename = 'msgstate_views'",
                (schema,),
            )
        }
        rows = connection.execute(
            f'SELECT count(*) FROM "{schema}".msgstate_views'
        ).fetchone()
    assert {"msgstate_views", "msgstate_tracking"} <= tables
    assert {
        "msgstate_views_pkey",
        "msgstate_views_status",
        "msgstate_views_started",
    } == indexes
    assert (1,) == rows
