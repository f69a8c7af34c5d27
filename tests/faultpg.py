"""A PostgreSQL cluster of the tests' own, to stop, SIGKILL and restart mid-run.

``.ci/fault-postgres`` creates it (Debian's ``pg_createcluster``, port 5440, trust
on loopback) and starts it, idempotently; ``.ci/run`` exports its URL as
``MSGSTATE_TEST_FAULT_POSTGRES_URL``. Without that variable the tests run the
script themselves. When the cluster cannot be had, the tests skip, or fail under
``MSGSTATE_REQUIRE_POSTGRES=1``. Never point this at a shared server.

Test runs on one machine take turns through a file lock: one run's restart must
not hit another run's test.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit
from uuid import uuid4

import pytest

from tests import pg

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / ".ci" / "fault-postgres"
URL_ENV = "MSGSTATE_TEST_FAULT_POSTGRES_URL"
VERSION = os.environ.get("MSGSTATE_FAULT_PG_VERSION", "15")
CLUSTER = "msgstate_fault"
LOCK_FILE = Path("/tmp/msgstate-fault-postgres.lock")
START_TIMEOUT = 90.0


@cache
def _url_or_reason() -> tuple[str | None, str | None]:
    url = os.environ.get(URL_ENV)
    if url:
        return url, None
    try:
        done = subprocess.run(
            [str(SCRIPT)], capture_output=True, text=True, timeout=180, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return None, f"{SCRIPT.name} could not run: {error}"
    if done.returncode != 0:
        return None, f"{SCRIPT.name} failed: {' '.join(done.stderr.split())[-300:]}"
    return done.stdout.strip().splitlines()[-1], None


def base_url() -> str:
    """The fault cluster's URL; skips (or fails when required) without it."""
    url, reason = _url_or_reason()
    if url is not None:
        return url
    message = f"no PostgreSQL cluster for the fault tests: {reason}"
    if pg.required():
        pytest.fail(f"MSGSTATE_REQUIRE_POSTGRES=1 but {message}", pytrace=False)
    pytest.skip(message)


def port() -> int:
    return urlsplit(base_url()).port or 5432


def fresh_url(connect_timeout: int) -> str:
    """A new schema's URL on the fault cluster."""
    parts = urlsplit(base_url())
    netloc = parts.netloc
    schema = f"{pg.SCHEMA_PREFIX}f{uuid4().hex[:15]}"
    return (
        f"{parts.scheme}://{netloc}{parts.path}?schema={schema}"
        f"&connect_timeout={connect_timeout}"
    )


def _data_dir() -> Path:
    return Path(f"/var/lib/postgresql/{VERSION}/{CLUSTER}")


def postmaster_pid() -> int:
    return int((_data_dir() / "postmaster.pid").read_text().split()[0])


def is_ready() -> bool:
    done = subprocess.run(
        ["pg_isready", "-q", "-h", "127.0.0.1", "-p", str(port())], check=False
    )
    return done.returncode == 0


def stop() -> None:
    """A clean (fast) shutdown: sessions are ended, then the server stops."""
    command = ["pg_ctlcluster", "--skip-systemctl-redirect", VERSION, CLUSTER]
    subprocess.run(
        [*command, "stop", "-m", "fast"],
        check=True,
        capture_output=True,
    )


def kill() -> None:
    """SIGKILL of the postmaster (its backends notice and exit on their own)."""
    os.kill(postmaster_pid(), signal.SIGKILL)
    deadline = time.monotonic() + 30
    while is_ready() and time.monotonic() < deadline:
        time.sleep(0.05)


def start() -> float:
    """Start it again (idempotent); returns when it accepts connections.

    The seconds it took, from the call to ready.
    """
    began = time.monotonic()
    done = subprocess.run(
        [str(SCRIPT)], capture_output=True, text=True, timeout=START_TIMEOUT
    )
    assert done.returncode == 0, done.stderr
    return time.monotonic() - began


@contextmanager
def exclusive() -> Iterator[None]:
    """Hold the machine-wide turn for the fault cluster; it is up on entry and exit."""
    base_url()
    with LOCK_FILE.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            start()
            yield
        finally:
            start()
            fcntl.flock(handle, fcntl.LOCK_UN)
