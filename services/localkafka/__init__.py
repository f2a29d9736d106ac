"""A single-node Kafka broker (KRaft) from Maven Central jars, for embedded mode and tests."""

from services.localkafka.broker import BrokerError, LocalKafka, ensure_jars

__all__ = ["BrokerError", "LocalKafka", "ensure_jars"]
