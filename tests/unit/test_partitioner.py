"""The relay's partitioner chooses exactly what kafka-python's default (and Java's) would."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from kafka.partitioner.default import DefaultPartitioner

from services.bus import KeyedPartitioner


class _Cluster:
    def __init__(self, count: int) -> None:
        self.count = count

    def topics(self) -> set[str]:
        return {"t"}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(self.count))

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(self.count))


KEEP = 8  # small, so that the kept hashes are also dropped and computed again


@given(keys=st.lists(st.binary(min_size=1, max_size=40), max_size=60), count=st.integers(1, 12))
def test_a_key_lands_where_the_default_partitioner_puts_it(keys: list[bytes], count: int) -> None:
    default, keyed, cluster = DefaultPartitioner(), KeyedPartitioner(keep=KEEP), _Cluster(count)
    for key in keys + keys:  # the second time from the kept hashes
        expected = default.partition("t", None, key, None, None, cluster)
        assert keyed.partition("t", None, key, None, None, cluster) == expected


def test_the_partition_count_growing_is_seen() -> None:
    keyed, cluster = KeyedPartitioner(), _Cluster(3)
    before = {keyed.partition("t", None, bytes([n]), None, None, cluster) for n in range(200)}
    cluster.count = 12
    after = {keyed.partition("t", None, bytes([n]), None, None, cluster) for n in range(200)}
    assert before == {0, 1, 2} and max(after) > 2
