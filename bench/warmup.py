"""The broker's warm-up, before anything is measured.

The broker is a JVM: for its first minute of traffic its JIT compilers take CPU from
everything else on the machine (measured beside a 30,000-unit flash sale on a fresh broker:
6.1 s + 1.2 s of the broker's 10.7 s of CPU were its C2 and C1 compiler threads, 0.38 cores
in all). A broker in production has long been warm; here the first scenario alone would pay
for it. So the run first sends the broker traffic of the backend's kind (bursts of records
keyed to streams, then a record on every partition, acks from all replicas, idempotence, a
consumer-group member fetching them) on topics of its own. After 60 s of it the same flash
sale found the broker at 0.16 cores (1.8 s of C2 compiling still), and sold 1,965 units/s
against 1,427 on the fresh broker; after 30 s, 0.19 cores and 1,660.
"""

from __future__ import annotations

import threading
import time

from services.bus import EnvelopeProducer, ensure_topics, new_consumer, topic_names

WARMUP_NS = "bench-warmup."


def warm_broker(bootstrap: str, seconds: float, partitions: int = 6) -> dict[str, int]:
    """Sends and fetches for `seconds`; answers how many records went each way."""
    topics = topic_names(WARMUP_NS)
    ensure_topics(bootstrap, partitions, topics)
    producer = EnvelopeProducer(bootstrap, client_id="bench-warmup")  # the relay's producer
    consumer = new_consumer(bootstrap, "bench-warmup", client_id="bench-warmup")
    stop = threading.Event()
    fetched = 0

    def fetch() -> None:
        nonlocal fetched
        consumer.subscribe(topics)
        while not stop.is_set():
            fetched += sum(len(rs) for rs in consumer.poll(timeout_ms=100).values())

    fetcher = threading.Thread(target=fetch, name="bench-warmup-fetch", daemon=True)
    sent = 0
    try:
        every = [(t, p) for t in topics for p in producer.partitions_for(t)]
        fetcher.start()
        value = bytes(200)
        deadline = time.monotonic() + seconds
        burst = 0
        while time.monotonic() < deadline:
            burst += 1
            for n in range(50):  # a relay call's worth of events, then its markers
                producer.send(topics[n % len(topics)], b"%d/%d" % (burst, n), value)
            for topic, partition in every:
                producer.send(topic, None, value, partition=partition)
            producer.flush(timeout=30)
            sent += 50 + len(every)
    finally:
        stop.set()
        if fetcher.is_alive():
            fetcher.join(30)
        producer.close()
        consumer.close()
    return {"sent": sent, "fetched": fetched}
