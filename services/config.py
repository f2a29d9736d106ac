"""Settings: the one place that reads the environment. Defaults give the embedded mode."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from psycopg.conninfo import conninfo_to_dict

from services.affinity import AffinityError, allowed_cores
from services.affinity import parse as parse_cores

ROLES = frozenset({"api", "relay", "projector"})


class SettingsError(ValueError):
    """A configuration value that cannot be used; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    """Everything a process of this backend needs to know about its surroundings."""

    data_dir: Path = Path(".data")
    grpc_address: str = "127.0.0.1:50051"
    grpc_workers: int = 32
    # Empty: start the local single-node broker from the cached jars (embedded mode).
    kafka_bootstrap: str = ""
    kafka_port: int = 19092
    kafka_controller_port: int = 19093
    topic_partitions: int = 6
    # Prefixed to every topic name, so several deployments (or test runs) can share a cluster.
    topic_namespace: str = ""
    consumer_group: str = "retail-projector"
    event_store: Literal["sqlite", "postgres"] = "sqlite"
    # A libpq URI or key=value string, for event_store=postgres.
    postgres_dsn: str = ""
    # SQLAlchemy URL of the read models; empty: a SQLite file in data_dir.
    views_url: str = ""
    roles: frozenset[str] = field(default_factory=lambda: ROLES)
    seed_demo: bool = True
    # host:port of the Prometheus metrics endpoint; empty: none.
    metrics_address: str = ""
    # With api and relay/projector roles: run the relay and projector in a child process of
    # their own (each Python process has one GIL; the API's event loop keeps one to itself).
    pipeline_process: bool = False
    # The API server's event loop: uvloop's (faster per call, measured) or asyncio's own.
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"
    # Cores the API process keeps its threads on: auto, off or core numbers (services.affinity).
    api_cpus: str = "auto"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        defaults = cls()

        def get(name: str, default: str) -> str:
            return env.get(f"RETAIL_{name}", default).strip()

        def get_int(name: str, default: int) -> int:
            raw = get(name, str(default))
            try:
                return int(raw)
            except ValueError:
                raise SettingsError(f"RETAIL_{name}={raw!r} is not a whole number") from None

        store = get("EVENT_STORE", defaults.event_store)
        if store not in ("sqlite", "postgres"):
            raise SettingsError(f"RETAIL_EVENT_STORE={store!r}: choose 'sqlite' or 'postgres'")
        event_loop = get("EVENT_LOOP", defaults.event_loop)
        if event_loop not in ("uvloop", "asyncio"):
            raise SettingsError(f"RETAIL_EVENT_LOOP={event_loop!r}: choose 'uvloop' or 'asyncio'")
        roles = frozenset(r.strip() for r in get("ROLES", ",".join(sorted(ROLES))).split(",") if r)
        if not roles or not roles <= ROLES:
            raise SettingsError(
                f"RETAIL_ROLES={','.join(sorted(roles))!r}: choose from {', '.join(sorted(ROLES))}"
            )
        settings = cls(
            data_dir=Path(get("DATA_DIR", str(defaults.data_dir))),
            grpc_address=get("GRPC_ADDRESS", defaults.grpc_address),
            grpc_workers=get_int("GRPC_WORKERS", defaults.grpc_workers),
            kafka_bootstrap=get("KAFKA_BOOTSTRAP", ""),
            kafka_port=get_int("KAFKA_PORT", defaults.kafka_port),
            kafka_controller_port=get_int("KAFKA_CONTROLLER_PORT", defaults.kafka_controller_port),
            topic_partitions=get_int("TOPIC_PARTITIONS", defaults.topic_partitions),
            topic_namespace=get("TOPIC_NAMESPACE", ""),
            consumer_group=get("CONSUMER_GROUP", defaults.consumer_group),
            event_store="postgres" if store == "postgres" else "sqlite",
            postgres_dsn=get("POSTGRES_DSN", ""),
            views_url=get("VIEWS_URL", ""),
            roles=roles,
            seed_demo=get("SEED_DEMO", "1") not in ("0", "false", "no"),
            metrics_address=get("METRICS_ADDRESS", ""),
            pipeline_process=get("PIPELINE_PROCESS", "0") not in ("0", "false", "no", ""),
            event_loop="asyncio" if event_loop == "asyncio" else "uvloop",
            api_cpus=get("API_CPUS", defaults.api_cpus) or defaults.api_cpus,
        )
        try:  # checked here, so that a wrong value stops `run` before anything starts
            parse_cores(settings.api_cpus, allowed_cores())
        except AffinityError as error:
            raise SettingsError(str(error)) from None
        if settings.event_store == "postgres" and not settings.postgres_dsn:
            raise SettingsError("RETAIL_EVENT_STORE=postgres needs RETAIL_POSTGRES_DSN")
        return settings

    def with_changes(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def views_database_url(self) -> str:
        return self.views_url or f"sqlite:///{(self.data_dir / 'views.sqlite').resolve()}"

    def event_store_env(self) -> dict[str, str]:
        """The eventsourcing library's environment for the write side's event store."""
        if self.event_store == "sqlite":
            return {
                "PERSISTENCE_MODULE": "eventsourcing.sqlite",
                "SQLITE_DBNAME": str((self.data_dir / "events.sqlite").resolve()),
                "SQLITE_LOCK_TIMEOUT": "10",
            }
        params = conninfo_to_dict(self.postgres_dsn)
        return {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": str(params.get("dbname") or "postgres"),
            "POSTGRES_HOST": str(params.get("host") or "127.0.0.1"),
            "POSTGRES_PORT": str(params.get("port") or "5432"),
            "POSTGRES_USER": str(params.get("user") or "postgres"),
            "POSTGRES_PASSWORD": str(params.get("password") or ""),
            # The library waits forever for the table lock by default; a stuck writer must fail.
            "POSTGRES_LOCK_TIMEOUT": "10",
            "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT": "30",
        }

    @property
    def kafka_bootstrap_servers(self) -> str:
        return self.kafka_bootstrap or f"127.0.0.1:{self.kafka_port}"
