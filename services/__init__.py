"""Use cases, configuration, the gRPC adapter, the outbox relay and the entry points."""
