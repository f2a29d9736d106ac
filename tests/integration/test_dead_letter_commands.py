"""The operator's dead-letter commands on the real broker: list them, replay them."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from projections.projector import HandedRecord
from protos.retail.v1 import events_pb2
from services.bus import (
    DEAD_LETTER_TOPIC,
    STOCK_TOPIC,
    EnvelopeProducer,
    KafkaDeadLetters,
    ensure_topics,
    read_dead_letters,
    topic_names,
)
from services.cli import cli
from services.localkafka import LocalKafka

pytestmark = pytest.mark.kafka


def test_dead_letters_are_listed_with_their_reason_and_replayed_to_their_topic(
    kafka_broker: LocalKafka, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead_topic, stock = namespace + DEAD_LETTER_TOPIC, namespace + STOCK_TOPIC
    ensure_topics(kafka_broker.bootstrap, 1, [*topic_names(namespace), dead_topic])
    value = events_pb2.EventEnvelope(event_type="retail.Future.Thing").SerializeToString()
    producer = EnvelopeProducer(kafka_broker.bootstrap)
    try:
        KafkaDeadLetters(producer, dead_topic).send(
            HandedRecord(stock, 0, 41, value, b"A-1"), "UnknownEventError: no view applies it"
        )
    finally:
        producer.close()
    monkeypatch.setenv("RETAIL_KAFKA_BOOTSTRAP", kafka_broker.bootstrap)
    monkeypatch.setenv("RETAIL_TOPIC_NAMESPACE", namespace)
    runner = CliRunner()

    listed = runner.invoke(cli, ["dead-letters", "list"])
    assert listed.exit_code == 0, listed.output
    assert f"{stock}[0]@41\tUnknownEventError: no view applies it" in listed.output
    assert "1 dead letters" in listed.output

    replayed = runner.invoke(cli, ["dead-letters", "replay"])
    assert replayed.exit_code == 0, replayed.output
    assert "replayed 1 dead letters" in replayed.output
    back = read_dead_letters(kafka_broker.bootstrap, stock)  # reads any topic from its start
    assert [(letter.key, letter.value) for letter in back] == [(b"A-1", value)]
