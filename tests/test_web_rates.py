"""The overview's failure and resend charts (``msgstate.web.rates.EventRates``)
against counts taken here from ``export_history``."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from msgstate import MessageService, ResendPolicy
from msgstate.web.rates import COUNTED, EventRates
from tests.support import FakeClock

POLICY = ResendPolicy(enforce_backoff=False, max_attempts=1_000)
SPANS = (
    timedelta(minutes=1),
    timedelta(minutes=30),
    timedelta(hours=1),
    timedelta(hours=1, seconds=1),
    timedelta(hours=6),
    timedelta(days=1),
)

# Every event and every "now" falls 30 s into a minute, so whether an event is in
# the last day never depends on how the chart rounds to minutes.
STEPS = st.lists(
    st.tuples(
        st.integers(0, 8 * 60).map(lambda minutes: minutes * 60),  # gap, seconds
        st.sampled_from(["fail", "resend", "deliver", "check"]),
    ),
    max_size=40,
)


def expected(
    service: MessageService, now: datetime, span: timedelta
) -> tuple[list[str], dict[str, list[int]], int]:
    """Labels, counts and bucket size, computed from the exported history."""
    bucket = 60 if span <= timedelta(hours=1) else 3600
    count = max(1, int(span / timedelta(seconds=bucket)))
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    current = (now - epoch) // timedelta(seconds=bucket)  # the bucket holding now
    starts = [current - count + 1 + i for i in range(count)]
    counts = {kind: [0] * count for kind in COUNTED}
    for line in service.export_history():
        record = json.loads(line)
        at = datetime.fromisoformat(record["recorded_at"])
        if record["event"] not in COUNTED or at < now - timedelta(days=1):
            continue
        index = (at - epoch) // timedelta(seconds=bucket) - starts[0]
        if 0 <= index < count:
            counts[record["event"]][index] += 1
    labels = [
        (epoch + timedelta(seconds=start * bucket)).strftime("%H:%M")
        for start in starts
    ]
    return labels, counts, bucket


@pytest.fixture
def clock() -> FakeClock:
    clock = FakeClock()
    clock.advance(30)
    return clock


@pytest.fixture
def service(clock: FakeClock) -> Iterator[MessageService]:
    service = MessageService.open("memory://", clock=clock, policy=POLICY)
    try:
        yield service
    finally:
        service.close()


def play(
    service: MessageService,
    clock: FakeClock,
    steps: list[tuple[int, str]],
    prefix: str = "m",
) -> Iterator[int]:
    """Runs the steps; yields the index of each "check" step."""
    for i, (gap, action) in enumerate(steps):
        clock.advance(gap)
        if action == "check":
            yield i
            continue
        msg_id = f"{prefix}{i}"
        service.create(msg_id, sender="s", user_id="u")
        if action == "deliver":
            service.record_delivery(msg_id, seq=f"q{i}")
            continue
        service.record_failure(msg_id, code=6012)
        if action == "resend":
            service.resend(msg_id)
            service.record_failure(msg_id, code=6012)


@settings(max_examples=60)
@given(steps=STEPS, late=st.booleans())
def test_series_equals_the_exported_history(
    steps: list[tuple[int, str]], late: bool
) -> None:
    """At every check, for every span, the chart counts each failure and resend of
    the last day in the bucket (minute up to an hour's span, hour beyond) of its
    time; a chart made late (``late``) finds the last day in a longer log."""
    clock = FakeClock()
    clock.advance(30)
    service = MessageService.open("memory://", clock=clock, policy=POLICY)
    try:
        rates = None if late else EventRates(service)
        for _ in play(service, clock, steps):
            if rates is None:
                continue
            for span in SPANS:
                series = rates.series(span)
                labels, counts, bucket = expected(service, clock.now, span)
                assert (labels, counts, bucket) == (
                    series.labels,
                    series.counts,
                    series.bucket_seconds,
                )
        rates = EventRates(service) if late else rates
        assert rates is not None
        for span in SPANS:
            series = rates.series(span)
            assert expected(service, clock.now, span) == (
                series.labels,
                series.counts,
                series.bucket_seconds,
            )
    finally:
        service.close()


def test_a_chart_made_after_a_long_history_counts_only_the_last_day(
    service: MessageService, clock: FakeClock
) -> None:
    """Forty days of failures, one an hour: a new chart finds the last day by a
    binary search and counts exactly its 24 hours (the hour of now included)."""
    steps = [(3600, "fail")] * (40 * 24)
    list(play(service, clock, steps))
    series = EventRates(service).series(timedelta(days=1))
    assert 3600 == series.bucket_seconds
    assert [1] * 24 == series.counts["SendFailed"]
    assert [0] * 24 == series.counts["ResendRequested"]
    assert clock.now.strftime("%H:00") == series.labels[-1]


def test_reads_every_page_and_only_new_notifications(
    service: MessageService, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With pages of 2 notifications the counts are the same; a second call reads
    only what was recorded since the first (counted events are never doubled)."""
    import msgstate.web.rates as rates_module

    monkeypatch.setattr(rates_module, "_PAGE", 2)
    rates = EventRates(service)
    list(play(service, clock, [(60, "resend")] * 5))
    hour = timedelta(hours=1)
    first = rates.series(hour)
    assert 10 == sum(first.counts["SendFailed"])
    assert 5 == sum(first.counts["ResendRequested"])
    assert first == rates.series(hour)
    list(play(service, clock, [(60, "fail")], prefix="n"))
    assert 11 == sum(rates.series(hour).counts["SendFailed"])
    assert expected(service, clock.now, hour)[1] == rates.series(hour).counts


def test_an_empty_store_has_empty_buckets(service: MessageService) -> None:
    series = EventRates(service).series(timedelta(hours=2))
    assert 3600 == series.bucket_seconds
    assert {kind: [0, 0] for kind in COUNTED} == series.counts
    assert ["23:00", "00:00"] == series.labels


def _gap(service: MessageService, clock: FakeClock) -> None:
    list(play(service, clock, [(3600, "fail")] * 72, prefix="old"))
    clock.advance(2 * 86400)
    list(play(service, clock, [(60, "resend")] * 5, prefix="new"))
    clock.advance(86400 - 4 * 60)  # the first "new" failure is now a day old


def _steady(service: MessageService, clock: FakeClock) -> None:
    list(play(service, clock, [(3600, "fail")] * 72))


def _recent(service: MessageService, clock: FakeClock) -> None:
    list(play(service, clock, [(60, "fail")] * 3))


def _last_only(service: MessageService, clock: FakeClock) -> None:
    list(play(service, clock, [(3600, "fail")] * 30))
    clock.advance(2 * 86400)
    service.create("late", sender="s", user_id="u")


def _none(service: MessageService, clock: FakeClock) -> None:
    list(play(service, clock, [(3600, "fail")] * 30))
    clock.advance(2 * 86400)


@pytest.mark.parametrize(
    ("history", "reads"),
    [(_gap, 20), (_steady, 50), (_recent, 6), (_last_only, 1), (_none, 0)],
    ids=["gap", "steady", "recent", "last only", "none"],
)
def test_the_first_call_reads_only_the_last_day(
    history: Callable[[MessageService, FakeClock], None],
    reads: int,
    service: MessageService,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first call finds where the last day starts (a binary search reading one
    notification at a time) and reads the log in pages from exactly there; an event
    at exactly a day before now is read (the last day includes it). Reading less
    would lose events; reading more, memory and time. ``gap``: three days of hourly
    failures, two days of nothing, then five lifecycles of 4 events a minute apart,
    the first exactly a day old; ``steady``: 72 hours of hourly failures (2 events
    each; 25 of them in the closed day); ``recent``: everything in the last day;
    ``last only``: only the newest notification; ``none``: nothing in the last
    day."""
    history(service, clock)
    since = clock.now - timedelta(days=1)
    in_last_day = [
        i + 1
        for i, line in enumerate(service.export_history())
        if datetime.fromisoformat(json.loads(line)["recorded_at"]) >= since
    ]
    read: list[int] = []
    select = service.recorder.select_notifications

    def spy(*args: object, **kwargs: object) -> object:
        page = select(*args, **kwargs)  # type: ignore[arg-type]
        if kwargs.get("limit") != 1:
            read.extend(n.id for n in page)
        return page

    monkeypatch.setattr(service.recorder, "select_notifications", spy)
    series = EventRates(service).series(timedelta(days=1))
    assert in_last_day == read
    assert reads == len(read)
    assert expected(service, clock.now, timedelta(days=1))[1] == series.counts


def test_a_clock_moved_back_counts_nothing_after_now(
    service: MessageService, clock: FakeClock
) -> None:
    """Events recorded after the service's now (another writer's clock ahead, or
    this clock set back) are not in any bucket, and nothing fails."""
    list(play(service, clock, [(60, "fail")] * 3))
    clock.now -= timedelta(minutes=2)
    for span in (timedelta(minutes=5), timedelta(hours=2)):
        series = EventRates(service).series(span)
        assert expected(service, clock.now, span)[1] == series.counts
    assert 1 == sum(
        EventRates(service).series(timedelta(minutes=5)).counts["SendFailed"]
    )


def test_labels_are_utc_whatever_the_local_time_zone(
    service: MessageService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TZ", "Asia/Shanghai")
    time.tzset()
    try:
        series = EventRates(service).series(timedelta(minutes=2))
        assert ["23:59", "00:00"] == series.labels
    finally:
        monkeypatch.undo()
        time.tzset()
