"""The local broker explains what is missing instead of failing obscurely."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.localkafka.broker import BrokerError, ensure_jars, find_java


def test_a_missing_java_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BrokerError, match=r"Java 17\+ is needed"):
        find_java()


def test_a_missing_maven_is_a_clear_error_when_the_jars_are_not_cached(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BrokerError, match="Maven is needed"):
        ensure_jars(tmp_path / "cache")


def test_cached_jars_need_no_maven(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    jars = tmp_path / "cache" / "kafka-4.4.0" / "jars"
    jars.mkdir(parents=True)
    (jars / ".complete").write_text("4.4.0\n")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert ensure_jars(tmp_path / "cache") == jars.resolve()
