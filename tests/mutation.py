"""Mutation testing for msgstate: ``python -m tests.mutation MODULE [MODULE ...]``.

Runs `mutmut <https://mutmut.readthedocs.io>`_ (3.x) on one module of the package at
a time, with only the tests that exercise it, and prints the score. Each module gets
its own working directory, ``.mutation/<module>/`` (git-ignored), holding a copy of
the package, the tests and a ``pyproject.toml`` whose ``[tool.mutmut]`` section this
script writes; mutmut's results stay there, so afterwards

    cd .mutation/policy && mutmut results      # every mutant and its verdict
    cd .mutation/policy && mutmut show NAME     # the diff of one mutant

work as documented by mutmut. A second run re-tests only what changed (mutmut's own
cache); ``--fresh`` starts over.

Adding a module is one line in :data:`MODULES`: its name and the tests to run.

Mutants judged *equivalent* (no test can tell them from the original, because they
do not change any answer of the public API) are listed in :data:`EQUIVALENT` with a
sentence why; the score leaves them out. A listed name that no longer survives, or
no longer exists, is reported so the list cannot go stale silently.

The tests run with the hypothesis profile ``mutation`` (derandomized, so a verdict is
reproducible) and without the PostgreSQL variants of the backend matrix (the logic
mutated here is the same on every backend; PostgreSQL only makes each run slower).
``--postgres`` runs them too, for the modules only PostgreSQL reaches
(``_pg_store``, ``_schema``, ``keys``, ``archive``, ``shards``, ``_pg_shards``);
its results are kept apart, in ``.mutation/<module>-postgres/``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: module -> the tests that exercise it (pytest paths, relative to the checkout).
MODULES: dict[str, tuple[str, ...]] = {
    "status": ("tests/test_status_and_codes.py", "tests/test_properties.py"),
    "domain": (
        "tests/test_properties.py",
        "tests/test_service.py",
        "tests/test_expected_attempt.py",
        "tests/stateful",
        "tests/test_domain_answers.py",
        "tests/test_privacy.py",
    ),
    "policy": (
        "tests/test_properties.py",
        "tests/test_policy_dict.py",
        "tests/test_policy_answers.py",
        "tests/test_service.py",
        "tests/test_projections.py",
        "tests/test_whatif.py",
    ),
    "views": (
        "tests/test_service.py",
        "tests/test_properties.py",
        "tests/stateful",
        "tests/test_domain_answers.py",
    ),
    "projections": (
        "tests/test_rebuild_decoding.py",
        "tests/test_projections_answers.py",
        "tests/test_projections.py",
        "tests/test_expected_attempt.py",
        "tests/stateful",
    ),
    "whatif": ("tests/test_whatif.py",),
    "batch": (
        "tests/test_batch.py",
        "tests/test_batch_answers.py",
        "tests/test_batch_cache.py",
        "tests/test_archive.py",
    ),
    "repository": (
        "tests/test_unit_of_work.py",
        "tests/test_batch.py",
        "tests/test_batch_answers.py",
        "tests/test_batch_cache.py",
        "tests/test_service.py",
        "tests/test_privacy.py",
        "tests/test_archive.py",
        "tests/test_repository_answers.py",
    ),
    # No "application": mutmut 3's trampoline fails on its own ContextVar
    # (LookupError in MutmutCallStack.reset) once MessageService.open is
    # trampolined, before any mutant runs. What is left there is opening and
    # thin delegations to commands, repository, history and readmodels.
    "history": (
        "tests/test_history_answers.py",
        "tests/test_service.py",
        "tests/test_privacy.py",
        "tests/test_evolution.py",
        "tests/test_unit_of_work.py",
        "tests/test_properties.py",
        "tests/test_validation.py",
        "tests/test_storage_options.py",
        "tests/test_archive.py",
        "tests/test_expected_attempt.py",
        "tests/test_whatif.py",
        "tests/test_web.py",
        "tests/stateful",
    ),
    "readmodels": (
        "tests/test_readmodels_answers.py",
        "tests/test_projections.py",
        "tests/test_projections_answers.py",
        "tests/test_unit_of_work.py",
        "tests/test_rebuild_decoding.py",
        "tests/test_web_stuck.py",
        "tests/test_service.py",
    ),
    "commands": (
        "tests/test_commands.py",
        "tests/test_service.py",
        "tests/test_batch.py",
        "tests/test_batch_answers.py",
        "tests/test_validation.py",
        "tests/test_expected_attempt.py",
        "tests/test_domain_answers.py",
    ),
    "worker": (
        "tests/test_worker.py",
        "tests/test_cli_worker.py",
        "tests/test_worker_answers.py",
    ),
    "aio": ("tests/test_aio_mirror.py", "tests/test_worker.py"),
    "transports": (
        "tests/test_transports.py",
        "tests/test_worker.py",
        "tests/test_tencent.py",
    ),
    "codes": ("tests/test_status_and_codes.py",),
    "_elements": (
        "tests/test_elements.py",
        "tests/test_golden_shapes.py",
        "tests/test_elements_answers.py",
    ),
    "tencent": (
        "tests/test_tencent.py",
        "tests/test_golden_shapes.py",
        "tests/test_tencent_answers.py",
    ),
    "_schema": ("tests/test_schema.py", "tests/test_schema_locks.py"),
    "_pg_store": (
        "tests/test_pg_store_config.py",
        "tests/test_unavailable.py",
        "tests/test_postgres.py",
        "tests/test_service.py",
    ),
    "_pg_views": (
        "tests/test_pg_views_answers.py",
        "tests/test_rebuild_sql_answers.py",
        "tests/test_rebuild_decoding.py",
        "tests/test_projections.py",
        "tests/test_rebuild_sql.py",
    ),
    # The in-process shard tests only: the stateful, multi-process and SIGKILL
    # ones (test_shards_stateful, test_shards_processes, the first tests of
    # test_shard_move) take a minute each and would run for every surviving
    # mutant.
    "shards": (
        "tests/test_shards_map.py",
        "tests/test_shards.py",
        "tests/test_shards_merge.py",
        "tests/test_shards_options.py",
        "tests/test_shards_answers.py",
        "tests/test_shards_answers_2.py",
        "tests/test_shards_answers_3.py",
        "tests/test_shard_move.py::test_abort_before_the_handover_restores_the_source",
        "tests/test_shard_move.py::test_abort_after_the_handover_is_refused_and_resume_finishes",
        "tests/test_shard_move.py::test_moving_a_shard_to_its_owner_is_refused",
        "tests/test_shard_move.py::test_moving_a_shard_to_its_owner_in_a_new_map_is_refused",
        "tests/test_shard_move.py::test_moving_a_shard_the_map_gives_to_a_database_without_it_is_refused",
        "tests/test_shard_move.py::test_a_move_after_an_aborted_one_keeps_every_event",
        "tests/test_shard_move.py::test_resuming_a_handed_over_move_with_another_target_is_refused",
        "tests/test_shard_move.py::test_a_process_with_the_old_map_reads_what_the_new_database_holds",
        "tests/test_shard_move.py::test_bulk_commands_with_the_old_map_follow_a_moved_shard",
        "tests/test_shard_move.py::test_counts_during_a_move_count_each_message_once",
    ),
    "_pg_shards": (
        "tests/test_shards.py",
        "tests/test_shards_merge.py",
        "tests/test_shards_options.py",
        "tests/test_shards_answers.py",
        "tests/test_shards_answers_3.py",
        "tests/test_shard_move.py::test_abort_before_the_handover_restores_the_source",
        "tests/test_shard_move.py::test_abort_after_the_handover_is_refused_and_resume_finishes",
        "tests/test_shard_move.py::test_moving_a_shard_to_its_owner_is_refused",
        "tests/test_shard_move.py::test_moving_a_shard_to_its_owner_in_a_new_map_is_refused",
        "tests/test_shard_move.py::test_moving_a_shard_the_map_gives_to_a_database_without_it_is_refused",
        "tests/test_shard_move.py::test_a_move_after_an_aborted_one_keeps_every_event",
        "tests/test_shard_move.py::test_resuming_a_handed_over_move_with_another_target_is_refused",
        "tests/test_shard_move.py::test_a_process_with_the_old_map_reads_what_the_new_database_holds",
        "tests/test_shard_move.py::test_bulk_commands_with_the_old_map_follow_a_moved_shard",
        "tests/test_shard_move.py::test_counts_during_a_move_count_each_message_once",
    ),
    "metrics": ("tests/test_web.py",),
    "web/auth": ("tests/test_web_auth.py", "tests/test_web.py"),
    "web/rates": ("tests/test_web_rates.py", "tests/test_web.py"),
    "web/diagram": ("tests/test_web_diagram.py", "tests/test_web.py"),
    "web/app": (
        "tests/test_web.py",
        "tests/test_web_session.py",
        "tests/test_web_stuck.py",
        "tests/test_web_actions.py",
        "tests/test_web_pages.py",
        "tests/test_web_whatif.py",
        "tests/test_web_due_message.py",
        "tests/test_web_wiring.py",
    ),
    "archive": (
        "tests/test_archive.py",
        "tests/test_archive_properties.py",
        "tests/test_cli_archive.py",
        "tests/test_archive_answers.py",
        "tests/test_archive_answers_pg.py",
        "tests/test_archive_answers_sql.py",
        "tests/test_archive_writing.py",
        "tests/test_archive_verify.py",
        "tests/test_archive_selection.py",
        "tests/test_archive_run.py",
        "tests/test_archive_run_2.py",
    ),
    "keys": ("tests/test_privacy.py", "tests/test_keys_answers.py"),
    "storage": (
        "tests/test_rebuild_decoding.py",
        "tests/test_storage_answers.py",
        "tests/test_storage_options.py",
        "tests/test_urls.py",
        "tests/test_unavailable.py",
        "tests/test_read_notifications.py",
    ),
}

#: The fixed sample of mutants the normal test suite must kill
#: (tests/test_mutation_sample.py): name -> (file, original text, mutated text,
#: the tests that must fail; their PostgreSQL variants are left out). Each original
#: text must occur exactly once in its file.
SAMPLE: dict[str, tuple[str, str, str, tuple[str, ...]]] = {
    "transition table: no late acknowledgement": (
        "msgstate/status.py",
        'MessageStatus.SEND_FAIL,\n        "Delivered",',
        'MessageStatus.HAS_DELETED,\n        "Delivered",',
        ("tests/test_service.py::test_late_ack_after_ambiguous_failure_delivers",),
    ),
    "attempt limit off by one": (
        "msgstate/policy.py",
        "if view.attempts >= self.max_attempts:",
        "if view.attempts > self.max_attempts:",
        (
            "tests/test_service.py::test_each_resend_refusal_has_its_code_and_writes_nothing[memory-exhausted-1007]",
        ),
    ),
    "backoff cap doubled": (
        "msgstate/policy.py",
        "cap = self.maximum_interval.total_seconds()",
        "cap = self.maximum_interval.total_seconds() * 2",
        (
            "tests/test_properties.py::test_backoff_is_capped_at_maximum_interval_times_jitter",
        ),
    ),
    "read-model due filter (SQL) a moment late": (
        "msgstate/projections.py",
        "f\"AND {next_retry} <= {p('now')} + {_SLACK!r} \"",
        "f\"AND {next_retry} < {p('now')} - {_SLACK!r} \"",
        (
            "tests/test_projections.py::test_flat_schedule_with_huge_max_attempts[sqlite]",
        ),
    ),
    "read-model due filter (memory) a moment late": (
        "msgstate/projections.py",
        "and self.next_retry(row) <= now + _SLACK",
        "and self.next_retry(row) < now - _SLACK",
        (
            "tests/test_projections.py::test_flat_schedule_with_huge_max_attempts[memory]",
        ),
    ),
    "max_age boundary": (
        "msgstate/policy.py",
        "age > self.max_age",
        "age >= self.max_age",
        ("tests/test_projections.py::test_age_limits_at_the_boundary[memory-max_age]",),
    ),
    "online_only_max_age boundary": (
        "msgstate/policy.py",
        "and age > self.online_only_max_age",
        "and age >= self.online_only_max_age",
        (
            "tests/test_projections.py::test_age_limits_at_the_boundary[memory-online_only_max_age]",
        ),
    ),
    "read-model age boundary (SQL)": (
        "msgstate/projections.py",
        'terms.append(f"(created_at < {now} - {self.max_age!r})")',
        'terms.append(f"(created_at <= {now} - {self.max_age!r})")',
        ("tests/test_projections.py::test_age_limits_at_the_boundary[sqlite-max_age]",),
    ),
    "read model's jitter key": (
        "msgstate/projections.py",
        '"jitter_u": jitter_unit(aid, event["attempt"]),',
        '"jitter_u": jitter_unit(aid, event["attempt"] + 1),',
        (
            "tests/test_projections.py::test_each_message_is_due_at_its_own_next_retry_at[memory]",
        ),
    ),
    "read model ignores a resend's online_user_only": (
        "msgstate/projections.py",
        '"attempts": event["attempt"],\n            "online_user_only": int(event["online_user_only"]),',  # noqa: E501
        '"attempts": event["attempt"],',
        (
            "tests/test_projections.py::test_read_models_follow_a_resends_online_user_only",
        ),
    ),
    "what-if ignores a resend's online_user_only": (
        "msgstate/whatif.py",
        "view = evolve(\n                    view_of(message, new), online_user_only=event.online_user_only\n                )",  # noqa: E501
        "view = view_of(message, new)",
        (
            "tests/test_whatif.py::test_replay_judges_each_resend_by_its_own_option[memory-False]",
        ),
    ),
}


_PGA_1 = (
    "SQL keywords and unquoted identifiers are case-insensitive (PostgreSQL "
    "folds unquoted names to lower case)"
)
_PGA_2 = (
    "SQL and PL/pgSQL keywords and unquoted identifiers are case-insensitive "
    "(PostgreSQL folds unquoted names to lower case)"
)
_PGA_3 = (
    "reasons is built by a comprehension over records, so the two always have "
    "the same length and a strict zip never raises"
)

_SQLB_1 = (
    "reasons is built from records one for one, so the lengths always match "
    "and strict never raises"
)

_ARC_1 = (
    "A record read back from a file is used only for its id and events (by "
    "_verify, _still_finished and the stores' delete/restore); its msg_id is "
    "never read."
)


_ARF_1 = (
    "a MessageService only opens with PERSISTENCE_MODULE set to "
    "eventsourcing.popo/sqlite/postgres (its constructor's views_class_for or "
    "eventsourcing's factory refuses anything else), so the default of "
    "env.get is never used."
)

_FALLS_BACK = (
    "the text of a ValueError changes_for catches at once: it only sends the "
    "state to the mapper, and is never shown"
)

#: mutmut mutant name -> why it is equivalent (left out of the score).
_HELP = "changes only a metric's HELP text; no name, label or value changes"
_TOPIC = (
    "every topic msgstate stores is 'module:Class.Event' (one colon, one dot after"
    " it), on which this split gives the same last part"
)
_NOW = "dead_letters(now=None) uses service.now(), the value passed"
_AFTER = (
    "after='' and after=None both start before the first msg_id (ids are non-empty)"
)

_HEADER = "HTTP header names are case-insensitive (Starlette sends them lower-case)"
_FLOOR = (
    "int(a / b) and int(a // b) agree for the positive times and spans here (int "
    "truncates toward zero, which is the floor for positive values)"
)
_TRIM = (
    "only changes which minutes older than the last day are dropped from memory; "
    "every chart window starts in the hour after the one holding now minus a day, "
    "so such minutes are in no bucket"
)

_SAMESITE = (
    "SameSite=STRICT and SameSite=strict are the same attribute: browsers compare "
    "its value case-insensitively (RFC 6265bis)"
)
_FALSY = (
    "None, '' and 0 (or False) are all false where the value is used: a template "
    "'if', or json.dumps' ensure_ascii flag"
)
_JSON_ONLY = (
    "default=str only matters for values JSON cannot encode; message content is "
    "checked to be JSON when it is recorded"
)
_UNUSED_DEFAULT = "the default is never used: the code is parsed only when given"
_METHODS = "Starlette's Route upper-cases its methods"
_KEYS = "msgstate.keys."
_PROJ = "msgstate.projections."
_NUL_ONLY = "the default only feeds the NUL check, and 'XXXX' holds no NUL"
_SQLITE_LOCK = (
    "a key file's URL sets SQLITE_LOCK_TIMEOUT to 30 or not at all, and the "
    "default is 30"
)
_NOT_SHARED = "shared=None for False: only tested for truth (close() closes it)"
_TOKEN32 = "secrets.token_bytes(None) makes 32 bytes, as token_bytes(32)"
_SCHEMA_SET = "a PostgreSQL datastore's schema is never empty here (msgstate sets it)"
_PG_APP = "msgstate._pg_store.xǁPostgresStoreApplicationRecorderǁ"
_PG_AGG = "msgstate._pg_store.xǁPostgresStoreAggregateRecorderǁ"
_ES_CALLS = (
    "drops positional (or keyword) arguments that eventsourcing 9.5 never passes "
    "here: it calls these recorder methods the other way"
)
_LOOP_WAKE = (
    "the async worker's loop and wake event are both None until run() sets both, "
    "so testing either (or both) is the same"
)
_SQL_CASE = (
    "SQL keywords and unquoted identifiers are case-insensitive (PostgreSQL folds "
    "unquoted names to lower case; SQLite compares them without case)"
)
_READ_ONLY = "the commit flag of a transaction that only reads"
_PREPARE = (
    "whether psycopg prepares a CREATE TYPE that runs once per open: the same "
    "statement runs either way"
)
_TRACKING_CURRENT = (
    "tracking_migration_current is read only by eventsourcing's create_table(), "
    "which msgstate's DDL path never calls (it calls _create_table)"
)
_UTF8 = "'UTF-8' names the same codec as 'utf-8'"
_DUMPS_FLAG = (
    "json.dumps tests ensure_ascii and allow_nan only for truth: None is False"
)
_LIST_ITEM = (
    "every list field has an item spec and only list fields have one, and stored "
    "content comes back from JSON with lists, never tuples"
)
_NO_LIST_DOUBLES = (
    "no element model has a double inside a list, so converting a list's items "
    "and deep-copying them give the same values"
)
_EVERY_TYPE_MODELLED = (
    "unreachable: the answer asks for an element only for types in ELEM_KEYS, and "
    "ELEMENTS models each of them"
)
_CLOSED = (
    "any state but 'new' and 'open' is closed: __enter__ and _check_open compare "
    "with those two only"
)
_SWALLOWED = (
    "prefetch skips an invalid id without a word (the command refuses it), so the "
    "name in the swallowed error is never shown"
)
_ATTEMPT_BYTES = (
    "signed=False (or None) for True: attempts are >= 1, whose bytes are the same "
    "signed or not"
)
_BIG = "'big' is int.to_bytes' and int.from_bytes' default byte order (Python 3.11+)"
_WHITESPACE = (
    "trim_blocks/lstrip_blocks only change whitespace around template tags, none "
    "of which is inside a <pre> or <textarea>; HTML collapses it"
)

_REPO = "msgstate.repository.xǁMessageRepositoryǁ"
_PROJECT = (
    "eventsourcing's default projector (project_aggregate) is the same loop as "
    "msgstate.repository.project plus an assert that each event is a "
    "CanMutateProtocol, which every Message event and eventsourcing's Snapshot "
    "is: the same message, only slower"
)

_DEFAULT_ROW = (
    "only element [0] of the default row is read, and '' or 'XXXX' is neither "
    "'owned' nor 'frozen': the default is used only for a shard the database "
    "has no record of"
)
_BATCH_STATE = (
    "_state is only compared with 'new' (__enter__) and 'open' (_check_open): "
    "any other value after exit acts like 'closed'"
)
_GROUPING = (
    "grouping the items per shard from the start, or only after a database's "
    "group met a moving shard, gives every item the same outcome: only how many "
    "transactions save them differs"
)
_INVALID_GROUP = (
    "the key only keeps refused items apart; merged with a real shard's group "
    "they still get their own refusal, one outcome per item"
)
_ASKED = (
    "only databases in groups are asked (the comprehension's filter), so the "
    "default of groups.get is never used"
)
_DEADLINE_EDGE = "< for <= at the exact deadline of a monotonic clock"
_PAUSE = (
    "the pause between tries: none while a shard is frozen is a busy wait with "
    "the same outcome at the deadline; one before a reload only delays it"
)
_STRICT_ZIP = (
    "a database's _many answers one outcome per item, so the lengths always "
    "match and strict= never decides anything"
)
_POOL = (
    "the thread pool's size and thread names: the same answers with any pool "
    "(the default size, another name)"
)
_ALL_KEYS = (
    "every status (and every code the copy has) is already a key: each "
    "database's status_counts has every status, and the copy's rows are in its "
    "own counts, so the default of .get is never used"
)
_PHASE_ONE = (
    "the copy before the freeze going on past the log's end: the events after "
    "it are copied then instead of after the freeze, in the same order, and "
    "checked the same way"
)
_CHAIN_BOUND = (
    "the bound on how deep the cause chain is followed: the fence's error is "
    "one or two links down, well inside any of these bounds"
)
_NO_RECORD = (
    "differs only when the routed database has no record of the shard, which "
    "an open map never routes to (opening refuses such a map)"
)

EQUIVALENT: dict[str, str] = {
    "msgstate.web.app.x__dead__mutmut_49": (
        "asks the read model for one more row than the page needs: the loop stops "
        "at a full page, so the same rows and links"
    ),
    "msgstate.web.app.x__dead__mutmut_66": (
        "stops the read loop one short page later: the next read is empty or "
        "already past a full page, so the same rows and links"
    ),
    "msgstate.web.app.x_policy_from_form__mutmut_12": (
        "the default is read only for an unticked checkbox, and any text but "
        "'on', 'true' or '1' is unticked"
    ),
    "msgstate.web.app.xǁ_Guardǁ_unauthorised__mutmut_19": _HEADER,
    "msgstate.web.app.xǁ_Guardǁ_unauthorised__mutmut_20": _HEADER,
    "msgstate.web.app.x__stuck__mutmut_58": (
        "reads one more row than the page needs to know there is a next one: the "
        "same rows and links"
    ),
    "msgstate.web.app.x__dead__mutmut_38": (
        "more = None for False: only ever tested for truth"
    ),
    "msgstate.web.app.xǁ_Guardǁdispatch__mutmut_34": _HEADER,
    "msgstate.web.app.xǁ_Guardǁdispatch__mutmut_35": _HEADER,
    "msgstate.web.app.xǁ_Guardǁdispatch__mutmut_38": _HEADER,
    "msgstate.web.app.xǁ_Guardǁdispatch__mutmut_39": _HEADER,
    "msgstate.web.app.xǁ_Guardǁdispatch__mutmut_44": _HEADER,
    "msgstate.web.app.xǁ_Guardǁdispatch__mutmut_45": _HEADER,
    "msgstate.web.app.xǁ_Guardǁdispatch__mutmut_50": _HEADER,
    "msgstate.web.app.xǁ_Guardǁdispatch__mutmut_51": _HEADER,
    "msgstate.web.app.xǁ_Guardǁdispatch__mutmut_60": _HEADER,
    "msgstate.web.app.xǁ_Guardǁdispatch__mutmut_61": _HEADER,
    "msgstate.web.app.xǁ_Guardǁdispatch__mutmut_31": (
        "Starlette's call_next ignores its argument (it runs the app on the "
        "middleware's own scope, receive and send)"
    ),
    "msgstate.web.app.xǁ_Guardǁdispatch__mutmut_76": _SAMESITE,
    "msgstate.web.app.x__login__mutmut_85": _SAMESITE,
    "msgstate.web.app.xǁ_Guardǁ_user__mutmut_8": (
        "Starlette's Headers.get is case-insensitive"
    ),
    "msgstate.web.app.xǁ_Guardǁ_user__mutmut_9": (
        "a missing Authorization header falls back to the session cookie whether "
        "the default is '' or 'XXXX' (neither starts with 'bearer ')"
    ),
    "msgstate.web.app.x__login__mutmut_41": (
        "a form without a token is refused either way: 'XXXX' is shorter than any "
        "token a token file may hold (16 characters)"
    ),
    "msgstate.web.app.x__due__mutmut_53": (
        "reads up to READ_LIMIT rows when unfiltered too: slower, the same rows "
        "and links"
    ),
    "msgstate.web.app.x__due__mutmut_60": (
        "reads two more rows than the page needs, not one: the same rows and links"
    ),
    "msgstate.web.app.x__message__mutmut_21": (
        "the search page without a msg_id renders the same without its context: "
        "msg_id is empty and the fields are only used with a message"
    ),
    "msgstate.web.app.x__message__mutmut_43": _FALSY,
    "msgstate.web.app.x__message__mutmut_63": _FALSY,
    "msgstate.web.app.x__message__mutmut_91": _FALSY,
    "msgstate.web.app.x__message__mutmut_99": _FALSY,
    "msgstate.web.app.x__message__mutmut_101": _FALSY,
    "msgstate.web.app.x__pretty__mutmut_3": _FALSY,
    "msgstate.web.app.x__pretty__mutmut_4": _JSON_ONLY,
    "msgstate.web.app.x__pretty__mutmut_8": _JSON_ONLY,
    "msgstate.web.app.x__chart_attr__mutmut_2": (
        "only the whitespace between JSON tokens changes; the chart reads the same "
        "config"
    ),
    "msgstate.web.app.x__chart_attr__mutmut_4": "the same whitespace-only change",
    "msgstate.web.app.x__page__mutmut_31": (
        "lstrip('XX_XX') strips the same leading underscores: no page handler's "
        "name starts with X"
    ),
    "msgstate.web.app.x__parse_now__mutmut_7": (
        "the same instant in the server's zone: it is only compared with other "
        "instants and shown through _when, which converts to UTC"
    ),
    "msgstate.web.app.xǁ_Consoleǁ__init____mutmut_14": _WHITESPACE,
    "msgstate.web.app.xǁ_Consoleǁ__init____mutmut_15": _WHITESPACE,
    "msgstate.web.app.xǁ_Consoleǁ__init____mutmut_18": _WHITESPACE,
    "msgstate.web.app.xǁ_Consoleǁ__init____mutmut_19": _WHITESPACE,
    "msgstate.web.app.xǁ_Consoleǁ__init____mutmut_25": _WHITESPACE,
    "msgstate.web.app.xǁ_Consoleǁ__init____mutmut_26": _WHITESPACE,
    "msgstate.web.app.x__filters__mutmut_18": _UNUSED_DEFAULT,
    "msgstate.web.app.x__filters__mutmut_30": _UNUSED_DEFAULT,
    "msgstate.web.app.x_create_app__mutmut_102": _METHODS,
    "msgstate.web.app.x_create_app__mutmut_104": _METHODS,
    "msgstate.web.app.x_create_app__mutmut_114": _METHODS,
    "msgstate.web.app.x_create_app__mutmut_124": _METHODS,
    "msgstate.web.diagram.x__clip__mutmut_21": (
        "dx is never 0 here: statuses in different columns differ in x, and an "
        "arrow within a column bends sideways, so its control point is off the "
        "column's x; only the dy == 0 guard is reached (the horizontal Created arrow)"
    ),
    "msgstate.web.diagram.x_transitions_svg__mutmut_160": (
        "None for False as _clip's 'start' flag: both are false"
    ),
    "msgstate.web.rates.xǁEventRatesǁ_first_id_since__mutmut_20": (
        "an empty page cannot happen: the search asks only for ids below "
        "max_notification_id() + 1, and select_notifications answers the next id "
        "at or after the one asked for"
    ),
    "msgstate.web.rates.xǁEventRatesǁ_first_id_since__mutmut_6": (
        "'or 1' only differs on an empty log, where both searches answer 1"
    ),
    "msgstate.web.rates.xǁEventRatesǁ_first_id_since__mutmut_7": (
        "a search range one id longer: the id past the last has no notification, so "
        "the search treats it as after the moment, and answers the same"
    ),
    "msgstate.metrics.xǁMsgStateCollectorǁcollect__mutmut_61": _NOW,
    "msgstate.metrics.xǁMsgStateCollectorǁcollect__mutmut_128": _HELP,
    "msgstate.metrics.xǁMsgStateCollectorǁcollect__mutmut_129": _HELP,
    "msgstate.metrics.xǁMsgStateCollectorǁcollect__mutmut_130": _HELP,
    "msgstate.web.rates.xǁEventRatesǁ_read__mutmut_20": _FLOOR,
    "msgstate.web.rates.xǁEventRatesǁseries__mutmut_9": _FLOOR,
    "msgstate.web.rates.xǁEventRatesǁseries__mutmut_29": _FLOOR,
    "msgstate.web.rates.xǁEventRatesǁseries__mutmut_33": _FLOOR,
    "msgstate.web.rates.xǁEventRatesǁseries__mutmut_10": _TRIM,
    "msgstate.web.rates.xǁEventRatesǁseries__mutmut_11": _TRIM,
    "msgstate.web.auth.x_load_tokens__mutmut_2": (
        "encoding=None reads with the locale's encoding, which is UTF-8 (C.UTF-8) "
        "wherever the tests run, so a UTF-8 file reads the same"
    ),
    "msgstate.web.auth.x_load_tokens__mutmut_5": "'UTF-8' and 'utf-8' are one codec",
    "msgstate.web.auth.xǁTokensǁof__mutmut_7": (
        "secrets.token_bytes(None) makes 32 bytes, as token_bytes(32)"
    ),
    "msgstate._pg_store.x_call__mutmut_26": (
        "1 - jitter instead of 1 + jitter: the jitter is symmetric around 0"
    ),
    "msgstate._pg_store.x_call__mutmut_25": (
        "dividing by (1 + jitter) instead of multiplying: the same +-5 % band "
        "around 0.2 s to within 0.0005 s; only a wait between retries changes"
    ),
    "msgstate._pg_store.xǁPostgresStoreFactoryǁ__init____mutmut_37": (
        "the pool's own reset hook is None (eventsourcing sets none), so passing "
        "None keeps it; _marking_reset's chaining is tested on its own"
    ),
    "msgstate.metrics.xǁMsgStateCollectorǁcollect__mutmut_9": _HELP,
    "msgstate.metrics.xǁMsgStateCollectorǁcollect__mutmut_10": _HELP,
    "msgstate.metrics.xǁMsgStateCollectorǁcollect__mutmut_11": _HELP,
    "msgstate.metrics.xǁMsgStateCollectorǁcollect__mutmut_25": _HELP,
    "msgstate.metrics.xǁMsgStateCollectorǁcollect__mutmut_26": _HELP,
    "msgstate.metrics.xǁMsgStateCollectorǁcollect__mutmut_27": _HELP,
    "msgstate.metrics.xǁMsgStateCollectorǁcollect__mutmut_43": _HELP,
    "msgstate.metrics.xǁMsgStateCollectorǁcollect__mutmut_44": _HELP,
    "msgstate.metrics.xǁMsgStateCollectorǁcollect__mutmut_45": _HELP,
    "msgstate.metrics.xǁMsgStateCollectorǁcollect__mutmut_69": _HELP,
    "msgstate.metrics.xǁMsgStateCollectorǁcollect__mutmut_70": _HELP,
    "msgstate.metrics.xǁMsgStateCollectorǁcollect__mutmut_71": _HELP,
    "msgstate.metrics.xǁMsgStateCollectorǁcollect__mutmut_85": _HELP,
    "msgstate.metrics.xǁMsgStateCollectorǁcollect__mutmut_86": _HELP,
    "msgstate.metrics.xǁMsgStateCollectorǁcollect__mutmut_87": _HELP,
    "msgstate.metrics.xǁMsgStateCollectorǁcollect__mutmut_104": _HELP,
    "msgstate.metrics.xǁMsgStateCollectorǁcollect__mutmut_105": _HELP,
    "msgstate.metrics.xǁMsgStateCollectorǁcollect__mutmut_106": _HELP,
    "msgstate.metrics.x_event_type_of__mutmut_4": _TOPIC,
    "msgstate.metrics.x_event_type_of__mutmut_5": _TOPIC,
    "msgstate.metrics.x_event_type_of__mutmut_6": _TOPIC,
    "msgstate.metrics.x_event_type_of__mutmut_9": _TOPIC,
    "msgstate.metrics.x_event_type_of__mutmut_10": _TOPIC,
    "msgstate.metrics.x_event_type_of__mutmut_11": _TOPIC,
    "msgstate.metrics.x_event_type_of__mutmut_12": _TOPIC,
    "msgstate.metrics.x_event_type_of__mutmut_13": _TOPIC,
    "msgstate.metrics.x_event_type_of__mutmut_16": _TOPIC,
    "msgstate.metrics.x_event_type_of__mutmut_17": _TOPIC,
    "msgstate.metrics.x_dead_letters_by_reason__mutmut_2": _NOW,
    "msgstate.metrics.x_dead_letters_by_reason__mutmut_6": _NOW,
    "msgstate.metrics.x_dead_letters_by_reason__mutmut_9": _NOW,
    "msgstate.metrics.x_dead_letters_by_reason__mutmut_3": _AFTER,
    "msgstate.policy.x_jitter_unit__mutmut_9": _ATTEMPT_BYTES,
    "msgstate.policy.x_jitter_unit__mutmut_12": _ATTEMPT_BYTES,
    "msgstate.policy.x_jitter_unit__mutmut_16": _ATTEMPT_BYTES,
    "msgstate.policy.x_jitter_unit__mutmut_11": _BIG,
    "msgstate.policy.x_jitter_unit__mutmut_22": _BIG,
    "msgstate.policy.xǁResendPolicyǁbase_delay__mutmut_13": (
        "'>' for '>=' in the overflow guard: at equality coefficient ** exponent "
        "is the cap ratio, so min(initial * ..., cap) is the cap as well"
    ),
    "msgstate.policy.xǁResendPolicyǁfrom_dict__mutmut_21": (
        "optional=None for False: the flag is only tested for truth"
    ),
    "msgstate.views.x_view_of__mutmut_11": (
        "msg_id=None for next_retry_at: the stream id is always given, and it alone "
        "keys the jitter"
    ),
    "msgstate.batch.xǁBatchǁ__exit____mutmut_1": _CLOSED,
    "msgstate.batch.xǁBatchǁ__exit____mutmut_2": _CLOSED,
    "msgstate.batch.xǁBatchǁ__exit____mutmut_3": _CLOSED,
    "msgstate.batch.xǁBatchǁcreate__mutmut_35": (
        "the id stays in the 'known missing' set, but _find looks in the batch's "
        "own messages first, where create put it"
    ),
    "msgstate.batch.xǁBatchǁprefetch__mutmut_3": _SWALLOWED,
    "msgstate.batch.xǁBatchǁprefetch__mutmut_7": _SWALLOWED,
    "msgstate.batch.xǁBatchǁprefetch__mutmut_8": _SWALLOWED,
    "msgstate.batch.xǁBatchǁprefetch__mutmut_9": (
        "stops prefetching at the first invalid id: the rest load one by one when "
        "commands need them, with the same answers (prefetch is only a speed-up)"
    ),
    "msgstate.projections.x__tagged_epoch__mutmut_6": _FALLS_BACK,
    "msgstate._pg_views.xǁPostgresMessageViewsǁ_upsert__mutmut_20": _SQL_CASE,
    "msgstate._pg_views.xǁPostgresMessageViewsǁ_upsert__mutmut_47": _SQL_CASE,
    "msgstate._pg_views.xǁPostgresMessageViewsǁ_upsert__mutmut_49": _SQL_CASE,
    "msgstate._pg_views.xǁPostgresMessageViewsǁ_upsert__mutmut_50": _SQL_CASE,
    "msgstate._pg_views.xǁPostgresMessageViewsǁ_upsert__mutmut_56": _SQL_CASE,
    "msgstate._pg_views.xǁPostgresMessageViewsǁ_upsert__mutmut_57": _SQL_CASE,
    "msgstate._pg_views.xǁPostgresMessageViewsǁ_upsert__mutmut_59": _SQL_CASE,
    "msgstate._pg_views.xǁPostgresMessageViewsǁ_upsert__mutmut_64": _SQL_CASE,
    "msgstate._pg_views.xǁPostgresMessageViewsǁ_upsert__mutmut_65": _SQL_CASE,
    "msgstate._pg_views.xǁPostgresMessageViewsǁ_upsert__mutmut_76": _SQL_CASE,
    "msgstate._pg_views.xǁPostgresMessageViewsǁ_upsert__mutmut_77": _SQL_CASE,
    "msgstate._pg_views.xǁPostgresMessageViewsǁ_upsert__mutmut_79": _SQL_CASE,
    "msgstate._pg_views.xǁPostgresMessageViewsǁ_upsert__mutmut_80": _SQL_CASE,
    "msgstate._pg_views.xǁPostgresMessageViewsǁ_upsert__mutmut_83": _SQL_CASE,
    "msgstate._pg_views.xǁPostgresMessageViewsǁ_upsert__mutmut_84": _SQL_CASE,
    "msgstate._pg_views.xǁPostgresMessageViewsǁ_upsert__mutmut_22": (
        "a group of exactly COPY_ROWS rows goes through INSERT instead of COPY: "
        "both write the same rows (test_postgres_rows_are_the_same_copied_or_inserted)"
    ),
    "msgstate.commands.xǁCommandsǁdelivery__mutmut_12": (
        "check.text reads allow_empty only as `not allow_empty`: None is as falsy "
        "as False"
    ),
    "msgstate.batch.xǁBatchǁ__init____mutmut_4": (
        "the service passes its own Commands, made from the same policy and clock "
        "that Batch would build them from: the same checks and changes"
    ),
    "msgstate.batch.xǁBatchǁ_apply__mutmut_5": (
        "a message the batch read from the store (or made) goes down the slower "
        "path: its change is applied, and a refusal or a repeat is applied again "
        "to the same message (_fresh returns it as it is), with the same answer"
    ),
    "msgstate.batch.xǁBatchǁ_apply__mutmut_14": (
        "after a change that wrote, _fresh returns the batch's own message (it has "
        "pending events) and the change is applied again: every command repeated "
        "is a no-op, so the answer and the events are the same"
    ),
    "msgstate.batch.xǁBatchǁcreate__mutmut_17": (
        "an id not taken from the cache enters the branch only when the batch "
        "holds its message, and _fresh returns that message unchanged"
    ),
    "msgstate.transports.xǁSimulatedTransportǁoutcome__mutmut_13": _UTF8,
    "msgstate.transports.xǁSimulatedTransportǁoutcome__mutmut_24": _BIG,
    "msgstate.transports.xǁSimulatedTransportǁoutcome__mutmut_35": _BIG,
    "msgstate.transports.xǁSimulatedTransportǁoutcome__mutmut_39": (
        "'>' for '>=': differs only when the hash's first 8 bytes give exactly the "
        "failure rate (for rate 0: eight zero bytes)"
    ),
    "msgstate._elements.x__ok__mutmut_18": _LIST_ITEM,
    "msgstate._elements.x__check__mutmut_33": _LIST_ITEM,
    "msgstate._elements.x__floated__mutmut_22": _LIST_ITEM,
    "msgstate._elements.x__floated__mutmut_23": _LIST_ITEM,
    "msgstate._elements.x__floated__mutmut_24": _NO_LIST_DOUBLES,
    "msgstate._elements.x__floated__mutmut_25": _NO_LIST_DOUBLES,
    "msgstate._elements.x__floated__mutmut_26": _NO_LIST_DOUBLES,
    "msgstate._elements.x__floated__mutmut_27": _NO_LIST_DOUBLES,
    "msgstate._elements.x_v2tim_element__mutmut_4": _EVERY_TYPE_MODELLED,
    "msgstate._elements.x_v2tim_element__mutmut_5": _EVERY_TYPE_MODELLED,
    "msgstate._elements.x_v2tim_element__mutmut_6": _EVERY_TYPE_MODELLED,
    "msgstate._elements.x_csdk_element__mutmut_12": (
        "a shallow copy of the C SDK element: it is serialised into json_param at "
        "once, so nothing can change it afterwards"
    ),
    "msgstate.tencent.x__random_of__mutmut_13": _UTF8,
    "msgstate.tencent.x__random_of__mutmut_20": _BIG,
    "msgstate.tencent.x__transport_desc__mutmut_18": _UTF8,
    "msgstate.tencent.x__transport_desc__mutmut_22": _UTF8,
    "msgstate.tencent.xǁV2TimValueCallbackǁto_dict__mutmut_34": _DUMPS_FLAG,
    "msgstate.tencent.xǁV2TimValueCallbackǁto_dict__mutmut_35": _DUMPS_FLAG,
    "msgstate.tencent.xǁV2TimValueCallbackǁto_json__mutmut_4": _DUMPS_FLAG,
    "msgstate.tencent.xǁV2TimValueCallbackǁto_json__mutmut_5": _DUMPS_FLAG,
    "msgstate._schema.x__ensure_postgres__mutmut_24": _SQL_CASE,
    "msgstate._schema.x__ensure_postgres__mutmut_31": _SQL_CASE,
    "msgstate._schema.x__ensure_postgres__mutmut_73": _SQL_CASE,
    "msgstate._schema.x__ensure_postgres__mutmut_75": _SQL_CASE,
    "msgstate._schema.x__ensure_postgres__mutmut_76": _SQL_CASE,
    "msgstate._schema.x__ensure_postgres__mutmut_84": _SQL_CASE,
    "msgstate._schema.x__ensure_postgres__mutmut_87": _SQL_CASE,
    "msgstate._schema.x__ensure_postgres__mutmut_88": _SQL_CASE,
    "msgstate._schema.x__ensure_sqlite__mutmut_16": _SQL_CASE,
    "msgstate._schema.x__ensure_sqlite__mutmut_30": _SQL_CASE,
    "msgstate._schema.x__ensure_sqlite__mutmut_31": _SQL_CASE,
    "msgstate._schema.x__ensure_sqlite__mutmut_37": _SQL_CASE,
    "msgstate._schema.x__ensure_sqlite__mutmut_38": _SQL_CASE,
    "msgstate._schema.x__pg_stored__mutmut_16": _SQL_CASE,
    "msgstate._schema.x__pg_stored__mutmut_17": _SQL_CASE,
    "msgstate._schema.x__pg_stored__mutmut_6": _SQL_CASE,
    "msgstate._schema.x__pg_tracking_state__mutmut_6": _SQL_CASE,
    "msgstate._schema.x__sqlite_stored__mutmut_6": _SQL_CASE,
    "msgstate._schema.x__sqlite_tracking_state__mutmut_6": _SQL_CASE,
    "msgstate._schema.x__ensure_postgres__mutmut_6": _READ_ONLY,
    "msgstate._schema.x__ensure_postgres__mutmut_7": _READ_ONLY,
    "msgstate._schema.x__ensure_sqlite__mutmut_3": _READ_ONLY,
    "msgstate._schema.x__ensure_sqlite__mutmut_4": _READ_ONLY,
    "msgstate._schema.x__ensure_postgres__mutmut_49": _PREPARE,
    "msgstate._schema.x__ensure_postgres__mutmut_51": _PREPARE,
    "msgstate._schema.x__ensure_postgres__mutmut_52": _PREPARE,
    "msgstate._schema.x__ensure_sqlite__mutmut_11": (
        "the block commits (or rolls back) explicitly before the connection's "
        "own commit flag is read"
    ),
    "msgstate._schema.x__ensure_sqlite__mutmut_12": (
        "the block commits (or rolls back) explicitly before the connection's "
        "own commit flag is read"
    ),
    "msgstate._schema.x__ensure_sqlite__mutmut_22": (
        "the answer of a DDL race's loser: the library ignores ensure_tables' "
        "answer, and the loser running no DDL is checked"
    ),
    "msgstate._schema.x__pg_tracking_state__mutmut_19": _TRACKING_CURRENT,
    "msgstate._schema.x__sqlite_tracking_state__mutmut_21": _TRACKING_CURRENT,
    "msgstate._schema.x__key__mutmut_7": (
        "no msgstate recorder has a tracking table name without a views or "
        "events table name, which come first"
    ),
    "msgstate._schema.x__key__mutmut_8": (
        "no msgstate recorder has a tracking table name without a views or "
        "events table name, which come first"
    ),
    "msgstate._schema.x__key__mutmut_15": (
        "every table-name attribute of msgstate's recorders is a string or None"
    ),
    "msgstate._schema.x__lock_key__mutmut_7": _BIG,
    "msgstate.worker.x__answer_of__mutmut_6": (
        "the desc cut in _answer_of: _record_sync cuts it to 1,000 again before "
        "recording"
    ),
    "msgstate.worker.xǁAsyncResendWorkerǁ__init____mutmut_48": _LOOP_WAKE,
    "msgstate.worker.xǁAsyncResendWorkerǁ__init____mutmut_49": _LOOP_WAKE,
    "msgstate.worker.xǁAsyncResendWorkerǁstop__mutmut_2": _LOOP_WAKE,
    "msgstate.worker.xǁ_Baseǁ__init____mutmut_10": (
        "a 10-character run token for 8: its length is not part of the documented "
        "request-id format, and ids stay within 128 characters"
    ),
    _PG_APP + "insert_events__mutmut_6": _ES_CALLS,
    _PG_APP + "select_events__mutmut_5": _ES_CALLS,
    _PG_APP + "select_notifications__mutmut_5": _ES_CALLS,
    "msgstate._pg_store.xǁPostgresStoreFactoryǁ__init____mutmut_6": (
        "the default is never used: msgstate.storage always sets "
        "POSTGRES_CONNECT_TIMEOUT (default 5)"
    ),
    _PG_AGG + "insert_events__mutmut_6": _ES_CALLS,
    _PG_AGG + "select_events__mutmut_5": _ES_CALLS,
    "msgstate._pg_store.xǁPostgresStoreFactoryǁ__init____mutmut_26": (
        "psycopg_pool's pools always have _check (None unless pre-ping is on)"
    ),
    "msgstate.tencent.xǁV2TIMMessageManagerǁreSendMessage__mutmut_2": (
        "looks the message up in more cases; the view is only compared when the "
        "claim may be a repeat (a transport and a request_id), and an unknown id "
        "is left to resend()"
    ),
    _KEYS + "x__create_concurrently__mutmut_3": (
        "the second attempt always raises or returns: a fourth is never reached"
    ),
    _KEYS + "x__keyed__mutmut_14": _UTF8,
    _KEYS + "x_hkdf_sha256__mutmut_11": (
        "HMAC zero-pads a key to its block size: 32 or 33 zero bytes are one key"
    ),
    _KEYS + "x_hkdf_sha256__mutmut_16": (
        "one extra block is computed, then cut off by out[:length]"
    ),
    _KEYS + "x_seal__mutmut_4": _DUMPS_FLAG,
    _KEYS + "x_seal__mutmut_26": _UTF8,
    _KEYS + "x_seal__mutmut_34": _UTF8,
    _KEYS + "x_unseal__mutmut_24": _UTF8,
    _KEYS + "xǁMemoryKeyStoreǁissue__mutmut_5": _TOKEN32,
    _KEYS + "xǁPostgresKeyStoreǁissue__mutmut_14": _TOKEN32,
    _KEYS + "xǁSQLiteKeyStoreǁissue__mutmut_8": _TOKEN32,
    _KEYS + "xǁPostgresKeyStoreǁ__init____mutmut_12": _SCHEMA_SET,
    _KEYS + "xǁPostgresKeyStoreǁ__init____mutmut_13": _SCHEMA_SET,
    _KEYS + "xǁ_PostgresMetaǁ__init____mutmut_11": _SCHEMA_SET,
    _KEYS + "xǁ_PostgresMetaǁ__init____mutmut_12": _SCHEMA_SET,
    _KEYS + "xǁPostgresKeyStoreǁget__mutmut_1": _READ_ONLY,
    _KEYS + "xǁPostgresKeyStoreǁget__mutmut_2": _READ_ONLY,
    _KEYS + "xǁ_PostgresMetaǁread__mutmut_1": _READ_ONLY,
    _KEYS + "xǁ_PostgresMetaǁread__mutmut_2": _READ_ONLY,
    _KEYS + "xǁStreamIdsǁ__init____mutmut_27": "the id cache's size only: the same ids",
    _KEYS + "xǁStreamIdsǁ__init____mutmut_28": "the id cache's size only: the same ids",
    _KEYS + "xǁPostgresKeyStoreǁ__init____mutmut_19": _SQL_CASE,
    _KEYS + "xǁPostgresKeyStoreǁ__init____mutmut_20": _SQL_CASE,
    _KEYS + "xǁPostgresKeyStoreǁ__init____mutmut_22": _SQL_CASE,
    _KEYS + "xǁPostgresKeyStoreǁdestroy__mutmut_10": _SQL_CASE,
    _KEYS + "xǁPostgresKeyStoreǁdestroy__mutmut_11": _SQL_CASE,
    _KEYS + "xǁPostgresKeyStoreǁdestroy__mutmut_13": _SQL_CASE,
    _KEYS + "xǁPostgresKeyStoreǁdestroy__mutmut_16": _SQL_CASE,
    _KEYS + "xǁPostgresKeyStoreǁdestroy__mutmut_17": _SQL_CASE,
    _KEYS + "xǁPostgresKeyStoreǁget__mutmut_10": _SQL_CASE,
    _KEYS + "xǁPostgresKeyStoreǁissue__mutmut_10": _SQL_CASE,
    _KEYS + "xǁPostgresKeyStoreǁissue__mutmut_13": _SQL_CASE,
    _KEYS + "xǁPostgresKeyStoreǁissue__mutmut_22": _SQL_CASE,
    _KEYS + "xǁ_PostgresMetaǁread__mutmut_8": _SQL_CASE,
    _KEYS + "xǁ_PostgresMetaǁread__mutmut_20": _SQL_CASE,
    _KEYS + "xǁ_PostgresMetaǁread__mutmut_21": _SQL_CASE,
    _KEYS + "xǁ_PostgresMetaǁrecord__mutmut_8": _SQL_CASE,
    _KEYS + "xǁ_PostgresMetaǁrecord__mutmut_9": _SQL_CASE,
    _KEYS + "xǁ_PostgresMetaǁrecord__mutmut_11": _SQL_CASE,
    _KEYS + "xǁ_PostgresMetaǁrecord__mutmut_12": _SQL_CASE,
    _KEYS + "xǁ_PostgresMetaǁrecord__mutmut_22": _SQL_CASE,
    _KEYS + "xǁ_PostgresMetaǁrecord__mutmut_25": _SQL_CASE,
    _KEYS + "xǁ_PostgresMetaǁrecord__mutmut_33": _SQL_CASE,
    _KEYS + "xǁSQLiteKeyStoreǁ__init____mutmut_6": _SQL_CASE,
    _KEYS + "xǁSQLiteKeyStoreǁdestroy__mutmut_4": _SQL_CASE,
    _KEYS + "xǁSQLiteKeyStoreǁdestroy__mutmut_5": _SQL_CASE,
    _KEYS + "xǁSQLiteKeyStoreǁdestroy__mutmut_11": _SQL_CASE,
    _KEYS + "xǁSQLiteKeyStoreǁdestroy__mutmut_12": _SQL_CASE,
    _KEYS + "xǁSQLiteKeyStoreǁdestroy__mutmut_14": _SQL_CASE,
    _KEYS + "xǁSQLiteKeyStoreǁdestroy__mutmut_15": _SQL_CASE,
    _KEYS + "xǁSQLiteKeyStoreǁdestroy__mutmut_20": _SQL_CASE,
    _KEYS + "xǁSQLiteKeyStoreǁdestroy__mutmut_21": _SQL_CASE,
    _KEYS + "xǁSQLiteKeyStoreǁissue__mutmut_7": _SQL_CASE,
    _KEYS + "xǁ_SQLiteMetaǁread__mutmut_8": _SQL_CASE,
    _KEYS + "xǁ_SQLiteMetaǁrecord__mutmut_4": _SQL_CASE,
    _KEYS + "xǁ_SQLiteMetaǁrecord__mutmut_11": _SQL_CASE,
    _KEYS + "x_open_key_store__mutmut_20": _SQLITE_LOCK,
    _KEYS + "x_open_key_store__mutmut_24": _SQLITE_LOCK,
    _KEYS + "x_open_key_store__mutmut_25": _SQLITE_LOCK,
    _KEYS + "x_open_key_store__mutmut_26": (
        "the default is used only for a private in-memory database, which no "
        "other connection can lock"
    ),
    _KEYS + "x_open_key_store__mutmut_28": _NOT_SHARED,
    _KEYS + "x_open_key_store__mutmut_40": _NOT_SHARED,
    "msgstate.storage.x__check_cipher_key__mutmut_12": _UTF8,
    "msgstate.storage.x__check_cipher_key__mutmut_15": (
        "b'XXXX' for b'': 4 bytes, refused as a key like the empty one"
    ),
    "msgstate.storage.x__postgres_env__mutmut_20": (
        "urlsplit refuses ports above 65535 first"
    ),
    "msgstate.storage.x__postgres_env__mutmut_30": _NUL_ONLY,
    "msgstate.storage.x__postgres_env__mutmut_33": _NUL_ONLY,
    "msgstate.storage.x__prepare_postgres__mutmut_45": _SQL_CASE,
    "msgstate.storage.x__prepare_postgres__mutmut_53": _SQL_CASE,
    "msgstate.storage.x__prepare_sqlite__mutmut_6": _SQLITE_LOCK,
    "msgstate.storage.x__prepare_sqlite__mutmut_10": _SQLITE_LOCK,
    "msgstate.storage.x__prepare_sqlite__mutmut_11": _SQLITE_LOCK,
    "msgstate.storage.x__prepare_sqlite__mutmut_25": _SQL_CASE,
    "msgstate.storage.x__prepare_sqlite__mutmut_26": _SQL_CASE,
    "msgstate.storage.x_read_notifications__mutmut_39": _SQL_CASE,
    "msgstate.storage.x_read_notifications__mutmut_40": _SQL_CASE,
    "msgstate.storage.x_read_notifications__mutmut_42": _SQL_CASE,
    "msgstate.storage.x_read_notifications__mutmut_45": _SQL_CASE,
    "msgstate.storage.x_read_notifications__mutmut_52": (
        "prepare=None for True: psycopg then prepares the SELECT after a few runs "
        "instead of at once; only the server's plan caching changes, not the rows"
    ),
    "msgstate.storage.x_read_notifications__mutmut_55": (
        "no prepare argument is prepare=None: psycopg prepares the SELECT after a "
        "few runs instead of at once; the same rows"
    ),
    "msgstate.storage.x_read_notifications__mutmut_56": (
        "prepare=False for True: psycopg never prepares the SELECT server-side; "
        "the same statement runs and returns the same rows"
    ),
    "msgstate.storage.x_generate_cipher_key__mutmut_3": _TOKEN32,
    "msgstate.storage.x_generate_cipher_key__mutmut_6": _UTF8,
    "msgstate.storage.x_persistence_env__mutmut_7": _UTF8,
    "msgstate.storage.x_select_streams__mutmut_17": _READ_ONLY,
    "msgstate.storage.x_select_streams__mutmut_18": _READ_ONLY,
    "msgstate.storage.x_select_streams__mutmut_57": _SQL_CASE,
    "msgstate.storage.x_select_streams__mutmut_58": _SQL_CASE,
    "msgstate.storage.x_select_streams__mutmut_60": _SQL_CASE,
    "msgstate.storage.x_select_streams__mutmut_74": _READ_ONLY,
    "msgstate.storage.x_select_streams__mutmut_75": _READ_ONLY,
    "msgstate.storage.x_service_env__mutmut_8": (
        "the scheme is lower-cased before it is compared"
    ),
    _PROJ + "x__ints__mutmut_6": (
        "never reached: the code lists given are never empty"
    ),
    _PROJ + "x__ints__mutmut_7": _SQL_CASE,
    _PROJ + "x__change__mutmut_73": (
        "SQLite names ignore case, and the in-memory row's updated_at for "
        "SEND_SUCC is never read"
    ),
    _PROJ + "x__change__mutmut_76": (
        "SQLite names ignore case, and the in-memory row's extra key is never read"
    ),
    _PROJ + "xǁMessageViewsǁdead_page__mutmut_8": _UTF8,
    _PROJ + "xǁMessageViewsǁdecode_key__mutmut_9": _UTF8,
    _PROJ + "xǁMessageViewsǁencode_key__mutmut_4": _UTF8,
    _PROJ + "xǁPOPOMessageViewsǁdead__mutmut_9": (
        "dead_page sorts again, and 'after' without a limit is never asked for"
    ),
    _PROJ + "xǁPOPOMessageViewsǁstuck__mutmut_11": (
        "a row at exactly the slack fails the exact check that follows"
    ),
    _PROJ + "xǁPolicyQueryǁis_due__mutmut_20": (
        "a row at exactly the slack is not due; it sorts last and is checked exactly"
    ),
    _PROJ + "xǁPolicyQueryǁnext_retry__mutmut_9": (
        "the last base delay equals the cap: the same wait"
    ),
    _PROJ + "xǁPolicyQueryǁof__mutmut_20": (
        "more repeated entries in the delay schedule: the same waits"
    ),
    _PROJ + "xǁPolicyQueryǁof__mutmut_21": (
        "the cap repeated once more: the same waits"
    ),
    _PROJ + "xǁPolicyQueryǁof__mutmut_24": (
        "a flat schedule stopped one entry later: the same waits"
    ),
    _PROJ + "xǁPolicyQueryǁof__mutmut_52": (
        "the catalog's only code range is PERMANENT, so the list stays empty"
    ),
    _PROJ + "xǁPolicyQueryǁof__mutmut_69": (
        "ranges() yields only ranges: 'last' is never None"
    ),
    _PROJ + "xǁPolicyQueryǁof__mutmut_74": ("the allowed ranges were empty anyway"),
    _PROJ + "xǁPolicyQueryǁretryable__mutmut_6": (
        "the allowed ranges are always empty"
    ),
    _PROJ + "xǁPolicyQueryǁretryable__mutmut_7": (
        "the allowed ranges are always empty"
    ),
    _PROJ + "xǁPolicyQueryǁretryable__mutmut_8": (
        "the allowed ranges are always empty"
    ),
    _PROJ + "xǁPolicyQueryǁsql_expired__mutmut_13": _SQL_CASE,
    _PROJ + "xǁPolicyQueryǁsql_retryable__mutmut_12": (
        "a single term (no allowed ranges) needs no joiner"
    ),
    _PROJ + "xǁPolicyQueryǁsql_retryable__mutmut_13": _SQL_CASE,
    _PROJ + "xǁPolicyQueryǁsql_retryable__mutmut_22": (
        "the blocked codes are never empty: '1=1' is unreachable"
    ),
    _PROJ + "xǁPolicyQueryǁsql_retryable__mutmut_26": _SQL_CASE,
    _PROJ + "xǁPolicyQueryǁsql_retryable__mutmut_29": _SQL_CASE,
    _PROJ + "xǁSQLMessageViewsǁdead__mutmut_5": (
        "the page is '' before, so = and += agree"
    ),
    _PROJ + "xǁSQLiteMessageViewsǁ__init____mutmut_3": (
        "the factory passes the datastore only, no keyword arguments"
    ),
    _PROJ + "xǁSQLiteMessageViewsǁ__init____mutmut_6": _SQL_CASE,
    _PROJ + "xǁSQLiteMessageViewsǁ__init____mutmut_7": _SQL_CASE,
    _PROJ + "xǁSQLiteMessageViewsǁ__init____mutmut_9": _SQL_CASE,
    _PROJ + "xǁSQLiteMessageViewsǁ__init____mutmut_10": _SQL_CASE,
    _PROJ + "xǁSQLiteMessageViewsǁ__init____mutmut_12": _SQL_CASE,
    _PROJ + "xǁSQLiteMessageViewsǁ__init____mutmut_13": _SQL_CASE,
    _PROJ + "xǁSQLiteMessageViewsǁ__init____mutmut_15": _SQL_CASE,
    _PROJ + "xǁSQLiteMessageViewsǁ__init____mutmut_16": _SQL_CASE,
    _PROJ + "xǁSQLiteMessageViewsǁ_query__mutmut_1": _READ_ONLY,
    _PROJ + "xǁSQLiteMessageViewsǁ_query__mutmut_2": _READ_ONLY,
    _PROJ + "xǁSQLiteMessageViewsǁapply__mutmut_10": _SQL_CASE,
    _PROJ + "xǁSQLiteMessageViewsǁapply__mutmut_11": _SQL_CASE,
    _PROJ + "xǁSQLiteMessageViewsǁclear__mutmut_9": _SQL_CASE,
    _PROJ + "xǁSQLiteMessageViewsǁclear__mutmut_10": _SQL_CASE,
    "msgstate.whatif.x__replay__mutmut_54": (
        "`counts['refused'] = 1` for the first refusal: that branch runs once per "
        "message (it sets first_refusal), when the count is still 0"
    ),
    "msgstate.whatif.x__replay__mutmut_63": (
        "the 'empty stream' error's message: unreachable, simulate() skips empty "
        "streams"
    ),
    "msgstate.whatif.x__replay__mutmut_64": "the same unreachable message",
    "msgstate.whatif.x__replay__mutmut_65": "the same unreachable message",
    "msgstate.whatif.x__replay__mutmut_66": "the same unreachable error",
    "msgstate.archive.xǁ_PostgresStoreǁ__init____mutmut_3": (
        "self.recorder is written but never read: every _PostgresStore method "
        "uses self.datastore, self.events and the other names built in "
        "__init__, and read_streams uses service.recorder"
    ),
    "msgstate.archive.xǁ_PostgresStoreǁensure__mutmut_9": _PGA_1,
    "msgstate.archive.xǁ_PostgresStoreǁensure__mutmut_12": (
        "the advisory-lock key only has to be the same in every process "
        "running this code and nothing else in msgstate takes it, so any "
        "constant string serialises concurrent creators of the archived table "
        "the same way"
    ),
    "msgstate.archive.xǁ_PostgresStoreǁensure__mutmut_13": (
        "the advisory-lock key only has to be the same in every process "
        "running this code and nothing else in msgstate takes it, so any "
        "constant string serialises concurrent creators of the archived table "
        "the same way"
    ),
    "msgstate.archive.xǁ_PostgresStoreǁensure__mutmut_19": _PGA_1,
    "msgstate.archive.xǁ_PostgresStoreǁensure__mutmut_30": _PGA_1,
    "msgstate.archive.xǁ_PostgresStoreǁensure__mutmut_31": _PGA_1,
    "msgstate.archive.xǁ_PostgresStoreǁensure__mutmut_33": _PGA_1,
    "msgstate.archive.xǁ_PostgresStoreǁensure__mutmut_34": _PGA_1,
    "msgstate.archive.xǁ_PostgresStoreǁensure__mutmut_36": _PGA_1,
    "msgstate.archive.xǁ_PostgresStoreǁensure__mutmut_37": _PGA_1,
    "msgstate.archive.xǁ_PostgresStoreǁensure__mutmut_47": _PGA_1,
    "msgstate.archive.xǁ_PostgresStoreǁensure__mutmut_48": _PGA_1,
    "msgstate.archive.xǁ_PostgresStoreǁensure__mutmut_50": _PGA_2,
    "msgstate.archive.xǁ_PostgresStoreǁensure__mutmut_51": (
        "an unquoted language name is folded to lower case, so PLPGSQL names plpgsql"
    ),
    "msgstate.archive.xǁ_PostgresStoreǁensure__mutmut_53": _PGA_2,
    "msgstate.archive.xǁ_PostgresStoreǁensure__mutmut_54": (
        "PL/pgSQL folds unquoted identifiers (NEW.ORIGINATOR_ID, ID) to lower "
        "case and condition names (UNIQUE_VIOLATION) are case-insensitive"
    ),
    "msgstate.archive.xǁ_PostgresStoreǁensure__mutmut_56": _PGA_2,
    "msgstate.archive.xǁ_PostgresStoreǁensure__mutmut_69": _PGA_1,
    "msgstate.archive.xǁ_PostgresStoreǁensure__mutmut_71": _PGA_1,
    "msgstate.archive.xǁ_PostgresStoreǁarchived_file__mutmut_1": (
        "commit=None is falsy like False: the transaction, which only reads, "
        "is rolled back either way"
    ),
    "msgstate.archive.xǁ_PostgresStoreǁarchived_file__mutmut_2": (
        "committing instead of rolling back a transaction that only reads "
        "(to_regclass and a SELECT) changes nothing in the store"
    ),
    "msgstate.archive.xǁ_PostgresStoreǁarchived_file__mutmut_8": _PGA_1,
    "msgstate.archive.xǁ_PostgresStoreǁarchived_file__mutmut_23": _PGA_1,
    "msgstate.archive.xǁ_PostgresStoreǁ_lock__mutmut_5": _PGA_1,
    "msgstate.archive.xǁ_PostgresStoreǁ_lock__mutmut_14": _PGA_1,
    "msgstate.archive.xǁ_PostgresStoreǁ_rows__mutmut_8": _PGA_1,
    "msgstate.archive.xǁ_PostgresStoreǁ_rows__mutmut_9": (
        "unquoted column names are folded to lower case, so the result "
        "columns are still notification_id, originator_id, ... as the row "
        "lookups expect"
    ),
    "msgstate.archive.xǁ_PostgresStoreǁ_rows__mutmut_11": _PGA_1,
    "msgstate.archive.xǁ_PostgresStoreǁ_rows__mutmut_14": _PGA_1,
    "msgstate.archive.xǁ_PostgresStoreǁ_rows__mutmut_15": _PGA_1,
    "msgstate.archive.xǁ_PostgresStoreǁ_rows__mutmut_28": (
        "the StoredEvent's originator_id is never read: _decide compares "
        "events by _key (version, topic, state) and restore only checks "
        "record.id in rows"
    ),
    "msgstate.archive.xǁ_PostgresStoreǁ_marks__mutmut_8": _PGA_1,
    "msgstate.archive.xǁ_PostgresStoreǁ_marks__mutmut_16": (
        "only a mark's archive_id (mark[0]) is read, by _decide and restore; "
        "the file name users see comes from archived_file's own query"
    ),
    "msgstate.archive.xǁ_PostgresStoreǁdelete__mutmut_12": _PGA_1,
    "msgstate.archive.xǁ_PostgresStoreǁdelete__mutmut_15": _PGA_1,
    "msgstate.archive.xǁ_PostgresStoreǁdelete__mutmut_23": (
        "the fallback applies only with no tracking row, and every record "
        "that reaches that check is a finished message stored exactly as in "
        "the file, so it has at least two events with distinct notification "
        "ids >= 1, one of them > 1: 'not yet in the read models' whether "
        "tracked is 0 or 1"
    ),
    "msgstate.archive.xǁ_PostgresStoreǁdelete__mutmut_47": (
        "rows.get gives None instead of [] for a stream gone from the store, "
        "and _decide tests not rows, which is true for both"
    ),
    "msgstate.archive.xǁ_PostgresStoreǁdelete__mutmut_49": (
        "rows.get gives None instead of [] for a stream gone from the store, "
        "and _decide tests not rows, which is true for both"
    ),
    "msgstate.archive.xǁ_PostgresStoreǁdelete__mutmut_54": _PGA_3,
    "msgstate.archive.xǁ_PostgresStoreǁdelete__mutmut_57": _PGA_3,
    "msgstate.archive.xǁ_PostgresStoreǁdelete__mutmut_58": _PGA_3,
    "msgstate.archive.xǁ_PostgresStoreǁdelete__mutmut_69": _PGA_1,
    "msgstate.archive.xǁ_PostgresStoreǁdelete__mutmut_78": _PGA_1,
    "msgstate.archive.xǁ_PostgresStoreǁdelete__mutmut_85": _PGA_1,
    "msgstate.archive.xǁ_PostgresStoreǁdelete__mutmut_99": _PGA_1,
    "msgstate.archive.xǁ_PostgresStoreǁdelete__mutmut_108": _PGA_1,
    "msgstate.archive.xǁ_PostgresStoreǁrestore__mutmut_44": _PGA_1,
    "msgstate.archive.xǁ_PostgresStoreǁrestore__mutmut_53": _PGA_1,
    "msgstate.archive.xǁ_PostgresStoreǁrestore__mutmut_54": _PGA_1,
    "msgstate.archive.xǁ_PostgresStoreǁrestore__mutmut_56": _PGA_1,
    "msgstate.archive.xǁ_PostgresStoreǁrestore__mutmut_62": _PGA_1,
    "msgstate.archive.xǁArchivingPOPORecorderǁ_assert_uniqueness__mutmut_7": (
        "the next _assert_uniqueness in the MRO (POPOAggregateRecorder's) "
        "ignores its keyword arguments (**_), and MessageService builds this "
        "recorder directly"
    ),
    "msgstate.archive.xǁ_MemoryStoreǁcandidates__mutmut_4": (
        "a wider candidate list changes nothing: _finished re-checks every "
        "candidate's loaded history (finished for these kinds, last change "
        "before `before`, never earlier than the row's updated_at) and keeps "
        "the sorted order"
    ),
    "msgstate.archive.xǁ_MemoryStoreǁcandidates__mutmut_7": (
        "a row at exactly the limit has its last event at `before` or later, "
        "which _finished skips"
    ),
    "msgstate.archive.xǁ_MemoryStoreǁcandidates__mutmut_9": (
        "the extra candidates (every old row when only 'dead' is asked for) "
        "are refused by _finished, whose is_finished answers False for a "
        "delivered message unless 'delivered' is in kinds"
    ),
    "msgstate.archive.xǁ_MemoryStoreǁcandidates__mutmut_16": (
        "the extra candidates (old rows that are not dead, or dead rows when "
        "only 'delivered' is asked for) are refused by _finished, which "
        "decides from the loaded history with the same rules"
    ),
    "msgstate.archive.xǁ_MemoryStoreǁdelete__mutmut_8": (
        "tracked differs only when the read models have tracked nothing, and "
        "then every record (a finished history: at least two events at "
        "distinct notification ids, one of them >= 2) is 'not yet in the read "
        "models' against 0 and against 1 alike"
    ),
    "msgstate.archive.xǁ_MemoryStoreǁdelete__mutmut_28": (
        "_decide reads only the mark's first element (the archive id), never the second"
    ),
    "msgstate.archive.xǁ_MemoryStoreǁdelete__mutmut_36": (
        "a stream is 'archived' only when the read models have tracked all of "
        "its events, so its Created event has written its row and the key is "
        "always there to pop"
    ),
    "msgstate.archive.xǁ_SQLiteStoreǁ__init____mutmut_16": (
        "eventsourcing's SQLite factory always names the snapshot table "
        "'stored_' + 'snapshots', which is the name the fallback derives from "
        "stored_events (msgstate's construct_env lets no environment variable "
        "rename it)"
    ),
    "msgstate.archive.xǁ_SQLiteStoreǁ__init____mutmut_18": (
        "the SQLite snapshot recorder always has events_table_name, so "
        "getattr's default is never used"
    ),
    "msgstate.archive.xǁ_SQLiteStoreǁ__init____mutmut_21": (
        "the SQLite snapshot recorder always has events_table_name, so "
        "getattr's default is never used"
    ),
    "msgstate.archive.xǁ_SQLiteStoreǁ__init____mutmut_22": (
        "eventsourcing's SQLite factory always names the snapshot table "
        "stored_snapshots, the same name the fallback derives from "
        "stored_events"
    ),
    "msgstate.archive.xǁ_SQLiteStoreǁ__init____mutmut_23": (
        "eventsourcing's SQLite factory always names the snapshot table "
        "stored_snapshots, the same name the fallback derives from "
        "stored_events"
    ),
    "msgstate.archive.xǁ_SQLiteStoreǁensure__mutmut_5": _SQL_CASE,
    "msgstate.archive.xǁ_SQLiteStoreǁensure__mutmut_6": _SQL_CASE,
    "msgstate.archive.xǁ_SQLiteStoreǁensure__mutmut_8": _SQL_CASE,
    "msgstate.archive.xǁ_SQLiteStoreǁensure__mutmut_9": _SQL_CASE,
    "msgstate.archive.xǁ_SQLiteStoreǁensure__mutmut_12": _SQL_CASE,
    "msgstate.archive.xǁ_SQLiteStoreǁensure__mutmut_13": _SQL_CASE,
    "msgstate.archive.xǁ_SQLiteStoreǁensure__mutmut_15": _SQL_CASE,
    "msgstate.archive.xǁ_SQLiteStoreǁarchived_file__mutmut_1": _READ_ONLY,
    "msgstate.archive.xǁ_SQLiteStoreǁarchived_file__mutmut_2": _READ_ONLY,
    "msgstate.archive.xǁ_SQLiteStoreǁarchived_file__mutmut_8": _SQL_CASE,
    "msgstate.archive.xǁ_SQLiteStoreǁ_has_snapshots__mutmut_6": _SQL_CASE,
    "msgstate.archive.xǁ_SQLiteStoreǁ_rows__mutmut_11": _SQL_CASE,
    "msgstate.archive.xǁ_SQLiteStoreǁ_rows__mutmut_12": _SQL_CASE,
    "msgstate.archive.xǁ_SQLiteStoreǁ_rows__mutmut_23": (
        "these events are only compared by version, topic and state "
        "(_Record.same_as via _key), and restore only asks whether an id has "
        "rows, so their originator_id is never read"
    ),
    "msgstate.archive.xǁ_SQLiteStoreǁ_marks__mutmut_14": (
        "_decide and restore read only a mark's archive id (and whether there "
        "is a mark), never its file"
    ),
    "msgstate.archive.xǁ_SQLiteStoreǁdelete__mutmut_9": _SQL_CASE,
    "msgstate.archive.xǁ_SQLiteStoreǁdelete__mutmut_10": _SQL_CASE,
    "msgstate.archive.xǁ_SQLiteStoreǁdelete__mutmut_16": _SQL_CASE,
    "msgstate.archive.xǁ_SQLiteStoreǁdelete__mutmut_17": _SQL_CASE,
    "msgstate.archive.xǁ_SQLiteStoreǁdelete__mutmut_48": (
        "_decide returns on `not rows` before using them, and None is as falsy as []"
    ),
    "msgstate.archive.xǁ_SQLiteStoreǁdelete__mutmut_50": (
        "_decide returns on `not rows` before using them, and None is as falsy as []"
    ),
    "msgstate.archive.xǁ_SQLiteStoreǁdelete__mutmut_55": _SQLB_1,
    "msgstate.archive.xǁ_SQLiteStoreǁdelete__mutmut_58": _SQLB_1,
    "msgstate.archive.xǁ_SQLiteStoreǁdelete__mutmut_59": _SQLB_1,
    "msgstate.archive.xǁ_SQLiteStoreǁrestore__mutmut_10": _SQL_CASE,
    "msgstate.archive.xǁ_SQLiteStoreǁrestore__mutmut_11": _SQL_CASE,
    "msgstate.archive.xǁ_SQLiteStoreǁrestore__mutmut_52": _SQL_CASE,
    "msgstate.archive.xǁ_SQLiteStoreǁrestore__mutmut_54": _SQL_CASE,
    "msgstate.archive.xǁ_Recordǁto_line__mutmut_21": (
        "Codec names are looked up case-insensitively, so decode('ASCII') is "
        "the same ascii codec and gives the same text."
    ),
    "msgstate.archive.xǁ_Recordǁto_line__mutmut_24": (
        "json's encoder only tests ensure_ascii for truth, so None behaves "
        "exactly like False."
    ),
    "msgstate.archive.xǁ_Recordǁfrom_line__mutmut_7": _ARC_1,
    "msgstate.archive.xǁ_Recordǁfrom_line__mutmut_8": _ARC_1,
    "msgstate.archive.xǁ_Recordǁfrom_line__mutmut_9": _ARC_1,
    "msgstate.archive.xǁ_Recordǁfrom_line__mutmut_10": _ARC_1,
    "msgstate.archive.xǁ_Recordǁfrom_line__mutmut_54": _ARC_1,
    "msgstate.archive.xǁ_Recordǁfrom_line__mutmut_59": _ARC_1,
    "msgstate.archive.xǁ_Recordǁfrom_line__mutmut_60": _ARC_1,
    "msgstate.archive.x__write__mutmut_18": (
        "Codec names are looked up case-insensitively, so encode('UTF-8') is "
        "the same utf-8 codec and gives the same bytes."
    ),
    "msgstate.archive.x__read_manifest__mutmut_5": (
        "Codec names are looked up case-insensitively, so "
        "read_text(encoding='UTF-8') decodes exactly as 'utf-8'."
    ),
    "msgstate.archive.x__candidates_sql__mutmut_24": (
        "SQL keywords are case-insensitive in SQLite and PostgreSQL, so ' or "
        "' is the same OR."
    ),
    "msgstate.archive.x__write__mutmut_87": (
        "json.dump leaves ensure_ascii=True, so the manifest text is pure "
        "ASCII and is written as the same bytes in the locale's "
        "(ASCII-compatible) encoding as in UTF-8"
    ),
    "msgstate.archive.x__write__mutmut_90": (
        "json.dump leaves ensure_ascii=True, so the manifest text is pure "
        "ASCII and is written as the same bytes in the locale's "
        "(ASCII-compatible) encoding as in UTF-8"
    ),
    "msgstate.archive.x__write__mutmut_94": (
        "'UTF-8' and 'utf-8' name the same codec (Python normalises codec "
        "names case-insensitively), so the manifest bytes are identical"
    ),
    "msgstate.archive.x__read_records__mutmut_6": (
        "'UTF-8' and 'utf-8' name the same codec (Python normalises codec "
        "names case-insensitively), so every line is decoded identically"
    ),
    "msgstate.archive.x__verify__mutmut_15": (
        "reading the whole file in one read(None) call instead of 1 MiB "
        "blocks feeds exactly the same bytes, in the same order, to the "
        "SHA-256 and the size count, so the check and its outcome are "
        "identical (only peak memory differs)"
    ),
    "msgstate.archive.x__verify__mutmut_17": (
        "reading in 2 MiB blocks instead of 1 MiB blocks feeds exactly the "
        "same bytes, in the same order, to the SHA-256 and the accumulated "
        "size, so the check and its outcome are identical"
    ),
    "msgstate.archive.x__verify__mutmut_18": (
        "reading in 2 MiB blocks (1 << 21) instead of 1 MiB blocks feeds "
        "exactly the same bytes, in the same order, to the SHA-256 and the "
        "accumulated size, so the check and its outcome are identical"
    ),
    "msgstate.archive.x__paths__mutmut_7": (
        "str(Path(x)) is never empty (Path('') is '.'), so `not str(path)` "
        "and `not str(None)` are both always False and only is_dir() decides."
    ),
    "msgstate.archive.x__progress_or_none__mutmut_2": (
        "archive and restore call the progress function only as a statement "
        "and never use its return value, so returning 0 instead of None "
        "changes nothing."
    ),
    "msgstate.archive.x__finished__mutmut_23": (
        "every Message event class (Created, CreatedSealed, SendFailed, "
        "ResendRequested, Delivered, Forgotten) declares `at`, so the getattr "
        "default is never used and a None default gives the same value."
    ),
    "msgstate.archive.x__finished__mutmut_26": (
        "every Message event class (Created, CreatedSealed, SendFailed, "
        "ResendRequested, Delivered, Forgotten) declares `at`, so getattr "
        "without a default returns the same value and never raises."
    ),
    "msgstate.archive.x__store_for__mutmut_3": _ARF_1,
    "msgstate.archive.x__store_for__mutmut_5": _ARF_1,
    "msgstate.archive.x__store_for__mutmut_8": _ARF_1,
    "msgstate.archive.x__store_for__mutmut_21": (
        "a MessageService only opens with PERSISTENCE_MODULE set to "
        "eventsourcing.popo/sqlite/postgres (its constructor's "
        "views_class_for or eventsourcing's factory refuses anything else), "
        "so the final raise of _store_for is unreachable."
    ),
    f"{_REPO}_get__mutmut_5": _PROJECT,
    f"{_REPO}load_streams__mutmut_25": _PROJECT,
    f"{_REPO}learn__mutmut_12": (
        "_read_first is used as an ordered set: only its keys are read (in, "
        "tuple(), next(iter()), del, and pop(msg_id, None) whose value is "
        "discarded), never the value stored for a key"
    ),
    **{
        f"msgstate._pg_views.xǁPostgresMessageViewsǁ_rebuild__mutmut_{n}": _SQL_CASE
        for n in [
            *(8, 11, 12, 20, 26, 27, 29, 66, 67, 69, 82, 92, 93, 95, 96),
            *(104, 111, 115, 116, 124),
        ]
    },
    **{
        f"msgstate._pg_views.xǁPostgresMessageViewsǁ_count__mutmut_{n}": _SQL_CASE
        for n in (8, 11, 12)
    },
    **{
        f"msgstate._pg_views.xǁPostgresMessageViewsǁ_copy_jitter__mutmut_{n}": _SQL_CASE
        for n in (3, 4, 6, 7, 16, 17, 19, 20, 24, 25, 27)
    },
    **{
        f"msgstate._pg_views.xǁPostgresMessageViewsǁ_clear__mutmut_{n}": _SQL_CASE
        for n in (5, 13)
    },
    **{
        f"msgstate._pg_views.x_rows_query__mutmut_{n}": _SQL_CASE
        for n in [
            *(8, 9, 16, 28, 29, 38, 48, 57, 69, 74, 77, 80, 92, 95, 100, 104),
            *(114, 117, 118, 125, 145, 160),
        ]
    },
    **{
        f"msgstate._pg_views.xǁPostgresMessageViewsǁ__init____mutmut_{n}": _SQL_CASE
        for n in (36, 38, 39, 41, 43, 45, 47, 54, 55, 66, 67)
    },
    "msgstate._pg_views.xǁPostgresMessageViewsǁ_query__mutmut_1": _READ_ONLY,
    "msgstate._pg_views.xǁPostgresMessageViewsǁ_query__mutmut_2": _READ_ONLY,
    "msgstate._pg_views.xǁPostgresMessageViewsǁ_rebuild__mutmut_30": (
        "CURRENT_SETTING('SERVER_ENCODING') AS ENCODING: the function and alias "
        "fold, and setting names are case-insensitive (both give 'UTF8')"
    ),
    "msgstate._pg_views.xǁPostgresMessageViewsǁ_rebuild__mutmut_42": (
        "(last or 1) for (last or 0): differs only when last is None or 0, both "
        "<= 2**53; last itself (the clear branch) is unchanged"
    ),
    "msgstate._pg_views.xǁPostgresMessageViewsǁ_copy_jitter__mutmut_8": (
        "cursor(None): a client-side cursor reads the whole result at execute and "
        "pages it from memory: the same rows are copied"
    ),
    "msgstate._pg_views.xǁPostgresMessageViewsǁ_copy_jitter__mutmut_10": (
        "cursor() without a name: client-side, as mutmut_8: the same rows"
    ),
    "msgstate._pg_views.xǁPostgresMessageViewsǁ_copy_jitter__mutmut_12": (
        "the server-side cursor's name: quoted by psycopg, lives in this "
        "transaction only, read by nothing else"
    ),
    "msgstate._pg_views.xǁPostgresMessageViewsǁ_copy_jitter__mutmut_13": (
        "the server-side cursor's name, as mutmut_12"
    ),
    "msgstate._pg_views.xǁPostgresMessageViewsǁ_copy_jitter__mutmut_21": (
        "fetchmany(None) pages by arraysize (1): one COPY per row, the same rows"
    ),
    "msgstate._pg_views.xǁPostgresMessageViewsǁapply__mutmut_12": _SQL_CASE,
    "msgstate._pg_views.xǁPostgresMessageViewsǁapply__mutmut_15": _SQL_CASE,
    "msgstate.readmodels.xǁReadModelsǁdue_resends__mutmut_1": (
        "MessageService.due_resends always passes limit (its own default is 100); "
        "ReadModels' default is never used"
    ),
    "msgstate.readmodels.xǁReadModelsǁstuck_sends__mutmut_1": (
        "MessageService.stuck_sends always passes limit; ReadModels' default is "
        "never used"
    ),
    "msgstate.readmodels.xǁReadModelsǁdead_letters__mutmut_1": (
        "MessageService.dead_letters always passes limit; ReadModels' default is "
        "never used"
    ),
    "msgstate.readmodels.xǁReadModelsǁwait__mutmut_1": (
        "MessageService.wait_for_projections always passes timeout; ReadModels' "
        "default is never used"
    ),
    "msgstate.readmodels.xǁReadModelsǁcatch_up__mutmut_34": (
        "without encode_key, changes keep msg_id and every views.apply runs "
        "prepare(), which encodes it with the same encode_key: the same rows"
    ),
    "msgstate.readmodels.xǁReadModelsǁcatch_up__mutmut_37": (
        "encode_key=None: as mutmut_34, apply's prepare() encodes msg_id the same"
    ),
    "msgstate.readmodels.xǁReadModelsǁrebuild__mutmut_2": (
        "memory and SQLite views.rebuild always return None; on PostgreSQL the "
        "in-database rebuild gives the same count, rows and tracking as clear + "
        "catch-up (tests/test_rebuild_sql.py): only the work is done twice"
    ),
    "msgstate.readmodels.xǁReadModelsǁrebuild__mutmut_3": (
        "recorder=None: the base rebuild ignores it, and PostgreSQL's returns None "
        "(not a PostgreSQL recorder), so it clears and catches up: the same answers"
    ),
    "msgstate.readmodels.xǁReadModelsǁwait__mutmut_25": (
        "'>' for '>=' differs only when monotonic() reads the deadline exactly; the "
        "same ProjectionTimeout follows after at most one more 10 ms poll"
    ),
    "msgstate.history.x__json_default__mutmut_1": (
        "the TypeError is never raised: export data holds only str/int/float/bool/"
        "None, dicts from json.loads, and datetimes (handled above); no message "
        "text can be seen"
    ),
    "msgstate.history.x__json_default__mutmut_2": (
        "same: the TypeError branch can't be reached from any stored event, so its "
        "message is never seen"
    ),
    "msgstate.history.xǁHistoryǁall_events__mutmut_2": (
        "start=None reads from the beginning: the memory recorders use 1, SQLite "
        "and PostgreSQL drop the lower bound; notification ids start at 1, so the "
        "events and pages are the same"
    ),
    "msgstate.history.xǁHistoryǁexport__mutmut_49": (
        "ensure_ascii=None is falsy; json.dumps with default= builds a JSONEncoder, "
        "which only tests `if self.ensure_ascii`: byte-identical output to False"
    ),
    "msgstate.history.xǁHistoryǁget_at__mutmut_43": _PROJECT,
    # -- shards (issue 11) --
    "msgstate.shards.xǁShardedMessageServiceǁ_moved_away__mutmut_4": (
        "True when there is no map file or no missing item changes nothing: with "
        "no file _reload returns False at once and the retry set is cleared; with "
        "no missing items the retry set is empty anyway"
    ),
    "msgstate.shards.xǁShardedMessageServiceǁ_moved_away__mutmut_14": _DEFAULT_ROW,
    "msgstate.shards.xǁShardedMessageServiceǁ_moved_away__mutmut_15": _DEFAULT_ROW,
    "msgstate.shards.xǁShardedMessageServiceǁ_moved_away__mutmut_16": _DEFAULT_ROW,
    "msgstate.shards.xǁShardedBatchǁ__exit____mutmut_1": _BATCH_STATE,
    "msgstate.shards.xǁShardedBatchǁ__exit____mutmut_2": _BATCH_STATE,
    "msgstate.shards.xǁShardedBatchǁ__exit____mutmut_3": _BATCH_STATE,
    "msgstate.shards.xǁShardedBatchǁ__exit____mutmut_8": (
        "Batch.__exit__ only tests exc_type and never reads exc"
    ),
    "msgstate.shards.xǁShardedBatchǁ__exit____mutmut_9": (
        "Batch.__exit__ never reads tb"
    ),
    "msgstate.shards.xǁShardedBatchǁ__exit____mutmut_21": (
        "Batch.__exit__ empties its messages before saving, so the parts "
        "parts[index-1:] adds (the saved one and the failed one) have no changed "
        "ids and exiting them again does nothing; at index 0 the error is "
        "re-raised before unsaved is read"
    ),
    "msgstate.shards.xǁShardedMessageServiceǁ_still_owned__mutmut_2": (
        "for a service opened from a ShardMap object _reload returns False at "
        "once anyway, so raising at once or after it is the same"
    ),
    "msgstate.shards.xǁShardedMessageServiceǁ_still_owned__mutmut_5": _NO_RECORD,
    "msgstate.shards.xǁShardedMessageServiceǁ_still_owned__mutmut_7": _NO_RECORD,
    "msgstate.shards.xǁShardedMessageServiceǁ_still_owned__mutmut_9": _NO_RECORD,
    "msgstate.shards.xǁShardedMessageServiceǁ_still_owned__mutmut_10": _NO_RECORD,
    "msgstate.shards.xǁShardedMessageServiceǁ_still_owned__mutmut_11": _NO_RECORD,
    "msgstate.shards.xǁShardedMessageServiceǁ_many__mutmut_24": _GROUPING,
    "msgstate.shards.xǁShardedMessageServiceǁ_many__mutmut_26": _GROUPING,
    "msgstate.shards.xǁShardedMessageServiceǁ_many__mutmut_30": _INVALID_GROUP,
    "msgstate.shards.xǁShardedMessageServiceǁ_many__mutmut_31": _INVALID_GROUP,
    "msgstate.shards.xǁShardedMessageServiceǁexport_history__mutmut_25": _ASKED,
    "msgstate.shards.xǁShardedMessageServiceǁexport_history__mutmut_27": _ASKED,
    "msgstate.shards.xǁShardedMessageServiceǁ_many__mutmut_47": _GROUPING,
    "msgstate.shards.xǁShardedMessageServiceǁ_many__mutmut_53": _DEADLINE_EDGE,
    "msgstate.shards.xǁShardedMessageServiceǁ_many__mutmut_91": _DEADLINE_EDGE,
    "msgstate.shards.xǁShardedMessageServiceǁ_many__mutmut_60": _PAUSE,
    "msgstate.shards.xǁShardedMessageServiceǁ_many__mutmut_61": _PAUSE,
    "msgstate.shards.xǁShardedMessageServiceǁ_many__mutmut_73": _STRICT_ZIP,
    "msgstate.shards.xǁShardedMessageServiceǁ_many__mutmut_76": _STRICT_ZIP,
    "msgstate.shards.xǁShardedMessageServiceǁ_many__mutmut_77": _STRICT_ZIP,
    "msgstate.shards.xǁShardedMessageServiceǁ_many__mutmut_101": _STRICT_ZIP,
    "msgstate.shards.xǁShardedMessageServiceǁ_many__mutmut_104": _STRICT_ZIP,
    "msgstate.shards.xǁShardedMessageServiceǁ_many__mutmut_105": _STRICT_ZIP,
    "msgstate.shards.xǁShardedMessageServiceǁ_each__mutmut_9": _POOL,
    "msgstate.shards.xǁShardedMessageServiceǁ_each__mutmut_10": _POOL,
    "msgstate.shards.xǁShardedMessageServiceǁ_each__mutmut_11": _POOL,
    "msgstate.shards.xǁShardedMessageServiceǁ_each__mutmut_12": _POOL,
    "msgstate.shards.xǁShardedMessageServiceǁ_each__mutmut_17": _POOL,
    "msgstate.shards.xǁShardedMessageServiceǁ_each__mutmut_18": _POOL,
    "msgstate.shards.xǁShardedMessageServiceǁ_each__mutmut_19": _POOL,
    "msgstate.shards.xǁShardedMessageServiceǁ_counts__mutmut_17": _ALL_KEYS,
    "msgstate.shards.xǁShardedMessageServiceǁ_counts__mutmut_19": _ALL_KEYS,
    "msgstate.shards.xǁShardedMessageServiceǁ_counts__mutmut_20": _ALL_KEYS,
    "msgstate.shards.xǁShardedMessageServiceǁ_counts__mutmut_24": _ALL_KEYS,
    "msgstate.shards.xǁShardedMessageServiceǁ_counts__mutmut_26": _ALL_KEYS,
    "msgstate.shards.xǁShardedMessageServiceǁ_counts__mutmut_27": _ALL_KEYS,
    "msgstate.shards.xǁShardedMessageServiceǁstatus_counts__mutmut_3": _ALL_KEYS,
    "msgstate.shards.xǁShardedMessageServiceǁstatus_counts__mutmut_5": _ALL_KEYS,
    "msgstate.shards.xǁShardedMessageServiceǁstatus_counts__mutmut_7": _ALL_KEYS,
    "msgstate.shards.x__move__mutmut_10": _DEFAULT_ROW,
    "msgstate.shards.x__move__mutmut_11": _DEFAULT_ROW,
    "msgstate.shards.x__copy__mutmut_8": _PHASE_ONE,
    "msgstate.shards.x__move__mutmut_19": _DEFAULT_ROW,
    "msgstate.shards.x__move__mutmut_20": _DEFAULT_ROW,
    "msgstate.shards.x__moved_from__mutmut_16": _DEFAULT_ROW,
    "msgstate.shards.x__moved_from__mutmut_17": _DEFAULT_ROW,
    "msgstate.shards.x__moved_from__mutmut_18": _DEFAULT_ROW,
    "msgstate.shards.x__moved_from__mutmut_22": (
        "a shard's stream count is non-zero exactly when its event count is"
    ),
    "msgstate._pg_shards.xǁShardTablesǁside_rows__mutmut_2": _READ_ONLY,
    "msgstate._pg_shards.xǁShardTablesǁside_rows__mutmut_3": _READ_ONLY,
    "msgstate._pg_shards.xǁShardTablesǁview_counts__mutmut_1": _READ_ONLY,
    "msgstate._pg_shards.xǁShardTablesǁview_counts__mutmut_2": _READ_ONLY,
    "msgstate._pg_shards.xǁShardTablesǁview_counts__mutmut_13": _SQL_CASE,
    "msgstate._pg_shards.xǁShardTablesǁview_counts__mutmut_14": _SQL_CASE,
    "msgstate._pg_shards.xǁShardTablesǁview_counts__mutmut_16": _SQL_CASE,
    "msgstate._pg_shards.x_fence_refusal__mutmut_3": _CHAIN_BOUND,
    "msgstate._pg_shards.x_fence_refusal__mutmut_6": _CHAIN_BOUND,
    "msgstate._pg_shards.x_fence_refusal__mutmut_7": _CHAIN_BOUND,
    "msgstate._pg_shards.x_fence_refusal__mutmut_42": _CHAIN_BOUND,
    "msgstate._pg_shards.x_fence_refusal__mutmut_43": _CHAIN_BOUND,
    "msgstate._pg_shards.x_fence_refusal__mutmut_44": _CHAIN_BOUND,
    "msgstate._pg_shards.xǁShardTablesǁview_counts__mutmut_46": (
        "rows are grouped by (status, code) and only SEND_FAIL rows count codes, "
        "so each code comes once and its running total always starts at 0"
    ),
    "msgstate._pg_shards.x_fence_refusal__mutmut_16": (
        "an error with a diag but another SQLSTATE has no SHARD_* hint (only the "
        "fence's RAISE sets one), so it is passed over either way"
    ),
    "msgstate._pg_shards.x_fence_refusal__mutmut_22": (
        "getattr without a default: every error with a diag is a psycopg error, "
        "which always has sqlstate"
    ),
    "msgstate._pg_shards.x_fence_refusal__mutmut_30": (
        "a missing hint as '' or 'XXXX': neither is SHARD_MOVING or SHARD_MOVED"
    ),
    "msgstate._pg_shards.x_fence_refusal__mutmut_37": (
        "a RAISE always has a primary message, so the default is never used"
    ),
    "msgstate._pg_shards.x_fence_refusal__mutmut_41": (
        "eventsourcing re-raises inside its except block with `from e`: "
        "__cause__ and __context__ are the same psycopg error"
    ),
    "msgstate.shards.xǁShardedMessageServiceǁ_reload__mutmut_11": (
        "> for >= at the exact deadline of a monotonic clock: one poll more or "
        "less at an instant no test can hit"
    ),
}

#: Passed to every pytest run mutmut makes (after the test selection).
PYTEST_ARGS = ("-p", "no:cacheprovider", "-k", "not postgres and not Postgres")
#: The same with ``--postgres``: the PostgreSQL variants run too.
PYTEST_ARGS_POSTGRES = ("-p", "no:cacheprovider")

_COPY = ("msgstate", "tests", "docs", "examples", "README.md", "CHANGELOG.md")


def _config(module: str, postgres: bool = False) -> str:
    def toml_list(items: tuple[str, ...] | list[str]) -> str:
        return "[" + ", ".join(f'"{item}"' for item in items) + "]"

    pytest_args = PYTEST_ARGS_POSTGRES if postgres else PYTEST_ARGS

    return (
        "\n[tool.mutmut]\n"
        f'source_paths = ["msgstate/{module}.py"]\n'
        f"also_copy = {toml_list(list(_COPY))}\n"
        f"pytest_add_cli_args = {toml_list(pytest_args)}\n"
        f"pytest_add_cli_args_test_selection = {toml_list(MODULES[module])}\n"
        "use_git_change_detection = false\n"
    )


def prepare(module: str, fresh: bool, postgres: bool = False) -> Path:
    """The working directory for ``module``: a copy of the checkout plus config."""
    # PostgreSQL runs keep their own results: mutmut's cache knows no test options.
    work = ROOT / ".mutation" / (module + ("-postgres" if postgres else ""))
    if fresh and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    for name in _COPY:
        source = ROOT / name
        target = work / name
        if source.is_dir():
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(
                source,
                target,
                ignore=shutil.ignore_patterns("__pycache__", "_build", "*.db*"),
            )
        else:
            shutil.copy2(source, target)
    pyproject = (ROOT / "pyproject.toml").read_text("utf-8")
    pyproject = re.sub(r"\n\[tool\.mutmut\][^\[]*", "\n", pyproject)
    (work / "pyproject.toml").write_text(pyproject + _config(module, postgres), "utf-8")
    return work


def results(work: Path) -> dict[str, str]:
    """mutmut's verdict for every mutant in ``work``: name -> status."""
    out = subprocess.run(
        [sys.executable, "-m", "mutmut", "results", "--all", "true"],
        cwd=work,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    verdicts: dict[str, str] = {}
    for line in out.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep and name.startswith("msgstate."):
            verdicts[name] = status.strip()
    return verdicts


def summarise(module: str, verdicts: dict[str, str]) -> tuple[int, int, int]:
    """Print the score of one module; returns (killed, counted, survivors)."""
    not_run = [n for n, s in verdicts.items() if s == "not checked"]
    verdicts = {n: s for n, s in verdicts.items() if s != "not checked"}
    if not_run:
        print(f"{module}: {len(not_run)} mutants not run (see --only)")
    killed = sum(1 for s in verdicts.values() if s in ("killed", "timeout"))
    equivalent = [n for n in verdicts if n in EQUIVALENT]
    survivors = [
        n
        for n, s in sorted(verdicts.items())
        if s not in ("killed", "timeout") and n not in EQUIVALENT
    ]
    counted = len(verdicts) - len(equivalent)
    score = 100.0 * killed / counted if counted else 100.0
    print(
        f"{module}: {killed}/{counted} killed ({score:.1f}%), "
        f"{len(equivalent)} equivalent, {len(verdicts)} mutants"
    )
    for name in survivors:
        print(f"  {verdicts[name]:<10} {name}")
    prefix = f"msgstate.{module}."
    for name in EQUIVALENT:
        if name in not_run:
            continue
        if name.startswith(prefix) and verdicts.get(name) != "survived":
            state = verdicts.get(name, "no longer exists")
            print(f"  stale equivalent ({state}): {name}")
    return killed, counted, len(survivors)


def copy_checkout(directory: Path) -> None:
    """Copy the package, the tests and ``pyproject.toml`` into ``directory``."""
    for part in ("msgstate", "tests"):
        shutil.copytree(
            ROOT / part,
            directory / part,
            ignore=shutil.ignore_patterns("__pycache__", "*.db*"),
        )
    shutil.copy2(ROOT / "pyproject.toml", directory / "pyproject.toml")


def copy_env(directory: Path) -> dict[str, str]:
    """The environment that makes Python import the copy in ``directory``."""
    env = dict(os.environ, HYPOTHESIS_PROFILE="mutation", PYTHONDONTWRITEBYTECODE="1")
    env.pop("CI", None)
    env["PYTHONPATH"] = str(directory)  # the copy, not the checkout, is imported
    return env


def run_sample_mutant(name: str, directory: Path) -> subprocess.CompletedProcess[str]:
    """Apply :data:`SAMPLE` mutant ``name`` to a copy of the package and tests in
    ``directory`` and run its tests there (first failure stops them)."""
    path, original, mutated, tests = SAMPLE[name]
    copy_checkout(directory)
    target = directory / path
    source = target.read_text("utf-8")
    if source.count(original) != 1:
        msg = f"{path} no longer holds the text sample mutant {name!r} changes"
        raise LookupError(msg)
    target.write_text(source.replace(original, mutated), "utf-8")
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"]
    return subprocess.run(
        [*command, "--rootdir", str(directory), *tests, "-k", "not postgres"],
        cwd=directory,
        env=copy_env(directory),
        capture_output=True,
        text=True,
        check=False,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.mutation", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("modules", nargs="*", help=f"any of {', '.join(MODULES)}")
    parser.add_argument("--all", action="store_true", help="every module")
    parser.add_argument("--fresh", action="store_true", help="discard old results")
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 2)
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="PATTERN",
        help="only mutants whose mutmut name matches (e.g. 'msgstate.policy.*decide*')",
    )
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="run the PostgreSQL variants too (needs MSGSTATE_TEST_POSTGRES_URL)",
    )
    args = parser.parse_args(argv)
    if args.postgres and not os.environ.get("MSGSTATE_TEST_POSTGRES_URL"):
        parser.error("--postgres needs MSGSTATE_TEST_POSTGRES_URL")
    modules = list(MODULES) if args.all else args.modules
    unknown = [m for m in modules if m not in MODULES]
    if not modules or unknown:
        parser.error(f"choose modules from: {', '.join(MODULES)}")
    env = dict(os.environ, HYPOTHESIS_PROFILE="mutation")
    env.pop("CI", None)
    children = str(args.max_children)
    status = 0
    for module in modules:
        started = time.monotonic()
        work = prepare(module, args.fresh, args.postgres)
        log = work / "mutmut-run.log"
        with log.open("w", encoding="utf-8") as output:
            run = subprocess.run(
                [
                    *(sys.executable, "-m", "mutmut", "run"),
                    *("--max-children", children, *args.only),
                ],
                cwd=work,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
                check=False,
            )
        if run.returncode != 0:
            tail = log.read_text("utf-8", errors="replace").replace("\r", "\n")
            print(f"{module}: mutmut failed (exit {run.returncode}); end of {log}:")
            print("\n".join(tail.splitlines()[-40:]))
            status = 1
            continue
        _, _, survivors = summarise(module, results(work))
        print(f"  ({time.monotonic() - started:.0f} s; results in {work})")
        status = status or int(survivors > 0)
    return status


if __name__ == "__main__":
    sys.exit(main())
