from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.config import Settings, SettingsError

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_defaults_are_the_embedded_mode() -> None:
    settings = Settings.from_env({})
    assert settings.grpc_address == "127.0.0.1:50051"
    assert settings.event_store == "sqlite"
    assert settings.kafka_bootstrap == ""
    assert settings.roles == {"api", "relay", "projector"}
    assert settings.event_store_env()["PERSISTENCE_MODULE"] == "eventsourcing.sqlite"


def test_postgres_is_chosen_by_configuration() -> None:
    settings = Settings.from_env(
        {"RETAIL_EVENT_STORE": "postgres", "RETAIL_POSTGRES_DSN": "postgresql://u:p@db:5433/retail"}
    )
    env = settings.event_store_env()
    assert env["PERSISTENCE_MODULE"] == "eventsourcing.postgres"
    assert (env["POSTGRES_HOST"], env["POSTGRES_PORT"], env["POSTGRES_DBNAME"]) == (
        "db", "5433", "retail",
    )  # fmt: skip
    assert env["POSTGRES_LOCK_TIMEOUT"] != "0"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"RETAIL_EVENT_STORE": "mysql"}, "RETAIL_EVENT_STORE"),
        ({"RETAIL_EVENT_STORE": "postgres"}, "RETAIL_POSTGRES_DSN"),
        ({"RETAIL_ROLES": "api,cook"}, "RETAIL_ROLES"),
        ({"RETAIL_KAFKA_PORT": "abc"}, "RETAIL_KAFKA_PORT"),
        ({"RETAIL_EVENT_LOOP": "trio"}, "RETAIL_EVENT_LOOP"),
    ],
)
def test_bad_settings_are_refused_naming_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        Settings.from_env(env)


@pytest.mark.parametrize(("given", "seen"), [(None, "false"), ("1", "1")])
def test_the_backend_turns_grpc_fork_support_off_unless_told(given: str | None, seen: str) -> None:
    """Its children exec right after fork; with the support on, one may abort before it
    does (services/__init__.py). A caller's own setting is kept."""
    env = {k: v for k, v in os.environ.items() if k != "GRPC_ENABLE_FORK_SUPPORT"}
    if given is not None:
        env["GRPC_ENABLE_FORK_SUPPORT"] = given
    shown = subprocess.run(
        [sys.executable, "-c",
         "import os, services.cli; print(os.environ['GRPC_ENABLE_FORK_SUPPORT'])"],
        env=env, capture_output=True, text=True, check=True, cwd=REPO_ROOT,
    ).stdout.strip()  # fmt: skip
    assert shown == seen


def test_the_tests_run_with_grpc_fork_support_off() -> None:
    # tests/conftest.py turns it off before gRPC loads: brokers and backend processes are
    # started from a process that serves gRPC (see there).
    assert os.environ["GRPC_ENABLE_FORK_SUPPORT"] == "false"
