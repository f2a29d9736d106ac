"""The write model: aggregates, value objects and the named errors of every refusal."""
