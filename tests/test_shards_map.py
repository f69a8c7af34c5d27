"""ShardMap, shard_of and format_shards on their own: no database is opened."""

from __future__ import annotations

import math
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from msgstate import (
    MESSAGE_NAMESPACE,
    ErrorCode,
    InvalidArgument,
    MessageService,
    ShardMap,
    generate_cipher_key,
    shard_of,
)
from msgstate.shards import MAX_VIRTUAL_SHARDS, format_shards

A = "postgresql://alice:s3cret@db1:5432/msgstate"
B = "postgresql://bob:hunter2@db2:5432/msgstate"
C = "postgresql://carol@db3/msgstate?schema=shards"


def refusal(call: Any, *args: Any, **kwargs: Any) -> str:
    """The desc of the InvalidArgument ``call(*args, **kwargs)`` raises."""
    with pytest.raises(InvalidArgument) as info:
        call(*args, **kwargs)
    assert ErrorCode.INVALID_ARGUMENT == info.value.code
    return info.value.desc


# -- virtual_shards --


@pytest.mark.parametrize("virtual_shards", [0, 3, 6, 65537, 131072, -2, True, "64"])
def test_virtual_shards_that_are_not_a_power_of_two_in_range_are_refused(
    virtual_shards: Any,
) -> None:
    """Only powers of two from 1 to 65,536 (ints, not bools or strings)."""
    desc = refusal(ShardMap, virtual_shards, {A: "0"})
    assert "virtual_shards must be a power of two" in desc
    assert repr(virtual_shards) in desc


@pytest.mark.parametrize("virtual_shards", [1, 2, 64, MAX_VIRTUAL_SHARDS])
def test_every_power_of_two_up_to_65536_is_accepted(virtual_shards: int) -> None:
    """A map of one database owning every shard, for each allowed size."""
    shard_map = ShardMap(virtual_shards, {A: f"0-{virtual_shards - 1}"})
    assert (virtual_shards, tuple(range(virtual_shards))) == (
        shard_map.virtual_shards,
        shard_map.databases[A],
    )


def test_the_largest_map_routes_its_last_shard() -> None:
    """65,536 shards over two databases: the last shard belongs to the second."""
    shard_map = ShardMap(MAX_VIRTUAL_SHARDS, {A: "0-32767", B: "32768-65535"})
    assert (A, B) == (shard_map.database_of(32767), shard_map.database_of(65535))


# -- every shard exactly once --


def test_a_shard_given_to_no_database_is_refused_by_name() -> None:
    """The message names the missing shards as ranges."""
    desc = refusal(ShardMap, 16, {A: "0-3", B: "5-9,12-15"})
    assert "shards 4,10-11 belong to no database" in desc


def test_a_shard_given_to_two_databases_is_refused_naming_both() -> None:
    """The overlap names the shard and both databases (passwords hidden)."""
    desc = refusal(ShardMap, 8, {A: "0-4", B: "4-7"})
    assert "shard 4 is given to two databases" in desc
    assert ("db1" in desc, "db2" in desc) == (True, True)
    assert ("s3cret" in desc, "hunter2" in desc) == (False, False)


@pytest.mark.parametrize("shard", [-1, 8, 100])
def test_a_shard_outside_the_range_is_refused(shard: int) -> None:
    """A shard number beyond 0 .. virtual_shards - 1 is named."""
    desc = refusal(ShardMap, 8, {A: [*range(8), shard]})
    assert f"shard {shard} of " in desc
    assert "outside 0-7" in desc


def test_a_database_may_own_no_shard() -> None:
    """An empty database (about to receive shards by a move) is allowed."""
    shard_map = ShardMap(8, {A: "0-7", B: "", C: []})
    assert ((), ()) == (shard_map.databases[B], shard_map.databases[C])


@pytest.mark.parametrize("databases", [{}, [], None, "postgresql://u@h/db", 5])
def test_databases_must_be_a_non_empty_mapping(databases: Any) -> None:
    desc = refusal(ShardMap, 4, databases)
    assert "databases must map each PostgreSQL URL to its shards" in desc


@pytest.mark.parametrize("url", [1, "", None])
def test_a_database_must_be_a_url_string(url: Any) -> None:
    desc = refusal(ShardMap, 1, {url: "0"})
    assert "each database must be a URL (str)" in desc


# -- PostgreSQL only --


@pytest.mark.parametrize(
    "url", ["sqlite:////tmp/x.db", "memory://", "sqlite:///:memory:"]
)
def test_a_database_that_is_not_postgresql_is_refused(url: str) -> None:
    desc = refusal(ShardMap, 2, {A: "0", url: "1"})
    assert "is not PostgreSQL" in desc
    assert repr(url) in desc


@pytest.mark.parametrize("url", ["nonsense", "postgresql://db1/msgstate"])
def test_a_malformed_url_is_refused(url: str) -> None:
    """The URL check of MessageService.open (a scheme, a user) applies."""
    desc = refusal(ShardMap, 1, {url: "0"})
    assert repr(url) in desc


# -- shard specs --


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (3, (3,)),
        ("3", (3,)),
        ("2-5", (2, 3, 4, 5)),
        ("0-3,7", (0, 1, 2, 3, 7)),
        (" 0 - 1 , 6 ", (0, 1, 6)),
        ([7, "0-1"], (0, 1, 7)),
        ((5, 4), (4, 5)),
        (["2-2", 6], (2, 6)),
        ("", ()),
        ([], ()),
    ],
)
def test_shard_specs_are_numbers_ranges_and_lists(
    spec: Any, expected: tuple[int, ...]
) -> None:
    """Each form gives the sorted shards; the rest go to a second database."""
    rest = sorted(set(range(8)) - set(expected))
    shard_map = ShardMap(8, {A: spec, B: rest})
    assert (expected, tuple(rest)) == (shard_map.databases[A], shard_map.databases[B])


@pytest.mark.parametrize(
    "spec", ["5-3", "-1", "a", "1-", "1-2-3", "0x1", [True], [1.0]]
)
def test_malformed_shard_items_are_refused_naming_them(spec: Any) -> None:
    item = spec[0] if isinstance(spec, list) else spec
    desc = refusal(ShardMap, 8, {A: spec})
    assert f"{item!r} is not a shard number or a range" in desc


@pytest.mark.parametrize("spec", [None, 1.5, True, {"0": 1}])
def test_shard_specs_of_other_types_are_refused(spec: Any) -> None:
    desc = refusal(ShardMap, 8, {A: spec})
    assert "must be a list of shard numbers or ranges" in desc


def test_a_huge_range_is_refused_as_outside_the_map() -> None:
    """A typo such as ``0-1000000000000`` is an InvalidArgument, at once."""
    desc = refusal(ShardMap, 64, {A: "0-1000000000000"})
    assert "outside 0-63" in desc


# -- routing --


@given(st.uuids(), st.sampled_from([1, 2, 16, 64, 1024, MAX_VIRTUAL_SHARDS]))
def test_shard_of_is_the_first_32_bits_big_endian_masked(
    stream_id: uuid.UUID, virtual_shards: int
) -> None:
    """The first four bytes (big-endian) modulo virtual_shards; the rest of the
    id does not matter."""
    first = int.from_bytes(stream_id.bytes[:4], "big")
    other = uuid.UUID(bytes=stream_id.bytes[:4] + bytes(12))
    assert (first % virtual_shards, first % virtual_shards) == (
        shard_of(stream_id, virtual_shards),
        shard_of(other, virtual_shards),
    )


def test_shard_of_reads_the_text_form_prefix() -> None:
    """As the SQL function does: the first eight hex digits of the id."""
    stream_id = uuid.UUID("89abcdef-0000-0000-0000-000000000000")
    assert (0x89ABCDEF % 65536, 0xEF % 16, 0) == (
        shard_of(stream_id, 65536),
        shard_of(stream_id, 16),
        shard_of(stream_id, 1),
    )


@given(st.uuids())
def test_the_maps_shard_of_and_database_of_agree_with_the_function(
    stream_id: uuid.UUID,
) -> None:
    shard_map = ShardMap(16, {A: "0-3,8", B: "4-7", C: "9-15"})
    shard = shard_of(stream_id, 16)
    expected = A if shard in (0, 1, 2, 3, 8) else B if shard < 8 else C
    assert (shard, expected) == (
        shard_map.shard_of(stream_id),
        shard_map.database_of(shard),
    )


@pytest.mark.parametrize("shard", [-1, 16, True, "1"])
def test_database_of_a_shard_outside_the_map_is_refused(shard: Any) -> None:
    shard_map = ShardMap(16, {A: "0-15"})
    refusal(shard_map.database_of, shard)


def counts_per_shard(stream_ids: list[uuid.UUID], virtual_shards: int) -> list[int]:
    counts = [0] * virtual_shards
    for stream_id in stream_ids:
        counts[shard_of(stream_id, virtual_shards)] += 1
    return counts


def chi_square(counts: list[int]) -> float:
    mean = sum(counts) / len(counts)
    return sum((n - mean) ** 2 / mean for n in counts)


# 20,000 ids over 64 shards: 312.5 each on average, standard deviation ~17.5.
# 1.3x / 0.7x the mean is ~5.4 sigma (p ~ 1e-6 over 64 shards); chi-square with
# 63 degrees of freedom has mean 63 and sd ~11.2: 130 is p < 1e-5. The ids are
# fixed, so the test is deterministic.
UNIFORM_IDS = [f"msg-{i:06d}" for i in range(20_000)]


def assert_uniform(counts: list[int]) -> None:
    mean = sum(counts) / len(counts)
    assert (True, True) == (max(counts) <= 1.3 * mean, min(counts) >= 0.7 * mean), (
        counts
    )
    assert chi_square(counts) < 130, counts


def test_uuid5_stream_ids_of_message_ids_spread_evenly_over_64_shards() -> None:
    stream_ids = [uuid.uuid5(MESSAGE_NAMESPACE, m) for m in UNIFORM_IDS]
    assert_uniform(counts_per_shard(stream_ids, 64))


def test_keyed_stream_ids_spread_evenly_over_64_shards() -> None:
    """A store with a cipher key names streams by HMAC: just as even."""
    service = MessageService.open("memory://", cipher_key=generate_cipher_key())
    try:
        stream_ids = [service.stream_id(m) for m in UNIFORM_IDS]
    finally:
        service.close()
    assert_uniform(counts_per_shard(stream_ids, 64))


def test_the_uniformity_bound_catches_a_skewed_function() -> None:
    """The bound is tight enough to fail a shard function that reads the
    wrong bytes (here: the uuid5 version nibble's byte)."""
    stream_ids = [uuid.uuid5(MESSAGE_NAMESPACE, m) for m in UNIFORM_IDS]
    counts = [0] * 64
    for stream_id in stream_ids:
        counts[stream_id.bytes[6] & 63] += 1
    with pytest.raises(AssertionError):
        assert_uniform(counts)
    assert math.isfinite(chi_square(counts))


# -- moved --


def test_moved_gives_the_shard_to_an_existing_database() -> None:
    shard_map = ShardMap(8, {A: "0-3", B: "4-7"})
    expected = ShardMap(8, {A: "0-2", B: "3-7"})
    assert expected == shard_map.moved(3, B)


def test_moved_to_a_new_database_adds_it_and_may_empty_the_source() -> None:
    shard_map = ShardMap(2, {A: "0", B: "1"})
    moved = shard_map.moved(0, C)
    assert ({A: (), B: (1,), C: (0,)}, C) == (
        dict(moved.databases),
        moved.database_of(0),
    )


def test_moved_leaves_the_original_map_alone() -> None:
    shard_map = ShardMap(8, {A: "0-3", B: "4-7"})
    shard_map.moved(0, B)
    assert (A, (0, 1, 2, 3)) == (shard_map.database_of(0), shard_map.databases[A])


def test_moving_a_shard_to_its_own_database_changes_nothing() -> None:
    shard_map = ShardMap(8, {A: "0-3", B: "4-7"})
    assert shard_map == shard_map.moved(2, A)


@pytest.mark.parametrize("shard", [-1, 8])
def test_moved_refuses_a_shard_outside_the_map(shard: int) -> None:
    refusal(ShardMap(8, {A: "0-7"}).moved, shard, B)


def test_moved_refuses_a_database_that_is_not_postgresql() -> None:
    desc = refusal(ShardMap(8, {A: "0-7"}).moved, 0, "sqlite:////tmp/x.db")
    assert "is not PostgreSQL" in desc


# -- equality, repr --


def test_maps_with_the_same_shards_are_equal_however_written() -> None:
    first = ShardMap(8, {A: "0-3", B: [4, 5, "6-7"]})
    second = ShardMap(8, {A: [3, 2, 1, 0], B: "4-7"})
    assert (first, hash(first)) == (second, hash(second))


def test_maps_that_differ_are_not_equal() -> None:
    base = ShardMap(8, {A: "0-3", B: "4-7"})
    others = [
        ShardMap(8, {A: "0-4", B: "5-7"}),
        ShardMap(16, {A: "0-7", B: "8-15"}),
        ShardMap(8, {A: "0-3", C: "4-7"}),
        ShardMap(8, {A: "0-3", B: "4-7", C: ""}),
    ]
    assert [False] * len(others) == [base == other for other in others]


def test_repr_hides_passwords_and_shows_ranges() -> None:
    shard_map = ShardMap(8, {A: "0-3,5", B: "4,6-7"})
    text = repr(shard_map)
    assert ("s3cret" in text, "hunter2" in text) == (False, False)
    assert (
        "ShardMap(virtual_shards=8, databases={"
        "'postgresql://alice:***@db1:5432/msgstate': '0-3,5', "
        "'postgresql://bob:***@db2:5432/msgstate': '4,6-7'})"
    ) == text


def test_str_hides_passwords_too() -> None:
    assert "s3cret" not in str(ShardMap(1, {A: "0"}))


# -- format_shards --


@pytest.mark.parametrize(
    ("shards", "expected"),
    [
        ([], ""),
        ([0], "0"),
        ([0, 1], "0-1"),
        ([5, 0, 1, 2, 2, 7, 8], "0-2,5,7-8"),
        (range(16), "0-15"),
        ([3, 1], "1,3"),
        ({9, 10, 11, 40}, "9-11,40"),
    ],
)
def test_format_shards_collapses_sorted_ranges(shards: Any, expected: str) -> None:
    assert expected == format_shards(shards)


@given(st.sets(st.integers(0, 300)))
def test_format_shards_reads_back_as_the_same_shards(shards: set[int]) -> None:
    """What format_shards writes is a spec that parses to the same shards."""
    others = sorted(set(range(301)) - shards)
    shard_map = ShardMap(512, {A: format_shards(shards), B: [*others, "301-511"]})
    assert tuple(sorted(shards)) == shard_map.databases[A]


# -- TOML files --

TOML = f"""\
virtual_shards = 16

[databases]
"{A}" = "0-7"
"{B}" = ["8-11", 12]
"{C}" = [13, 14, 15]
"""


def test_loads_reads_virtual_shards_and_the_databases_table() -> None:
    expected = ShardMap(16, {A: "0-7", B: "8-12", C: "13-15"})
    assert expected == ShardMap.loads(TOML)


def test_dumps_writes_what_loads_reads() -> None:
    shard_map = ShardMap(16, {A: "0-7,9", B: "8,10-15", C: ""})
    text = shard_map.dumps()
    assert shard_map == ShardMap.loads(text)
    assert text.startswith("virtual_shards = 16\n")
    assert f'"{A}" = "0-7,9"' in text.splitlines()


def test_dumps_keeps_the_order_of_the_databases() -> None:
    shard_map = ShardMap(4, {C: "0", A: "1", B: "2-3"})
    assert [C, A, B] == list(ShardMap.loads(shard_map.dumps()).databases)


def test_save_then_load_round_trips_and_leaves_no_scratch_file(tmp_path: Path) -> None:
    shard_map = ShardMap(16, {A: "0-7", B: "8-15"})
    path = tmp_path / "shards.toml"
    shard_map.save(path)
    assert (shard_map, ["shards.toml"]) == (
        ShardMap.load(path),
        sorted(p.name for p in tmp_path.iterdir()),
    )


def test_save_replaces_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "shards.toml"
    ShardMap(16, {A: "0-15"}).save(path)
    moved = ShardMap(16, {A: "0-7", B: "8-15"})
    moved.save(path)
    assert moved == ShardMap.load(str(path))


URL_TEXT = st.text(
    st.characters(
        max_codepoint=0xFFFF, blacklist_categories=("Cs",), blacklist_characters="@/?#"
    ),
    min_size=1,
    max_size=12,
)


@given(password=URL_TEXT)
def test_dumps_round_trips_urls_with_odd_passwords_in_the_bmp(password: str) -> None:
    """Quotes, backslashes, control characters: all survive dumps -> loads."""
    url = f"postgresql://u:{password}@h/db"
    try:
        shard_map = ShardMap(2, {url: "0-1"})
    except InvalidArgument:
        return  # a URL the store itself refuses
    assert shard_map == ShardMap.loads(shard_map.dumps())


def test_dumps_round_trips_a_url_with_a_character_beyond_the_bmp() -> None:
    url = "postgresql://u:p\U0001f600ss@h/db"
    shard_map = ShardMap(2, {url: "0-1"})
    assert shard_map == ShardMap.loads(shard_map.dumps())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("virtual_shards = 4\n[databases\n", "is not TOML"),
        ("virtual_shards = = 4\n", "is not TOML"),
        ("virtual_shards = 4\n", "must have virtual_shards and a [databases] table"),
        (f'[databases]\n"{A}" = "0"\n', "must have virtual_shards"),
        (
            f'virtual_shards = 1\nshards = 3\n[databases]\n"{A}" = "0"\n',
            "and nothing else); found ['databases', 'shards', 'virtual_shards']",
        ),
        ("virtual_shards = 4\ndatabases = 5\n", "databases must map each"),
        ("virtual_shards = 4\n[databases]\n", "databases must map each"),
        (f'virtual_shards = "4"\n[databases]\n"{A}" = "0-3"\n', "power of two"),
        (f'virtual_shards = 4.0\n[databases]\n"{A}" = "0-3"\n', "power of two"),
        (f'virtual_shards = 4\n[databases]\n"{A}" = "0-2"\n', "shards 3 belong to no"),
        (f'virtual_shards = 4\n[databases]\n"{A}" = 1.5\n', "must be a list of shard"),
        (
            'virtual_shards = 1\n[databases]\n"sqlite:////tmp/x.db" = 0\n',
            "not PostgreSQL",
        ),
    ],
)
def test_malformed_map_text_is_refused(text: str, expected: str) -> None:
    desc = refusal(ShardMap.loads, text, source="my.toml")
    assert expected in desc
    assert "'my.toml'" in desc or "TOML" not in expected


def test_load_of_a_missing_file_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    desc = refusal(ShardMap.load, path)
    assert f"shard map {str(path)!r} cannot be read" in desc


def test_load_of_a_malformed_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("virtual_shards = [\n", encoding="utf-8")
    desc = refusal(ShardMap.load, path)
    assert f"shard map {str(path)!r} is not TOML" in desc
