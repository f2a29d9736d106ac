"""The read side: Kafka consumer loop, pure row builders, SQL views and their queries."""
