"""docker-compose.yml cannot run here (no Docker engine); check it is well-formed and complete."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def test_compose_runs_kafka_postgres_and_every_backend_role() -> None:
    services = compose()["services"]
    assert {"kafka", "postgres", "api", "relay", "projector"} <= set(services)
    for role in ("api", "relay", "projector"):
        command = services[role]["command"]
        assert command[:2] == ["retail", "run"]
        assert command[command.index("--roles") + 1] == role


def test_backend_roles_use_kafka_and_postgres_not_the_embedded_defaults() -> None:
    services = compose()["services"]
    for role in ("api", "relay", "projector"):
        env = services[role]["environment"]
        assert env["RETAIL_KAFKA_BOOTSTRAP"] == "kafka:9092"
        assert env["RETAIL_EVENT_STORE"] == "postgres"
        assert "@postgres:" in env["RETAIL_POSTGRES_DSN"]
        assert env["RETAIL_VIEWS_URL"].startswith("postgresql")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"


def test_the_image_the_roles_run_is_built_from_this_repository() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "protos/generate.py" in dockerfile
    assert compose()["services"]["api"]["build"] == "."
