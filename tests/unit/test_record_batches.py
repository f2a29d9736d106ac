"""BatchRecords decodes fetched batches into exactly what kafka-python's own decoding gives."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka import TopicPartition
from kafka.consumer.fetcher import Fetcher
from kafka.errors import CorruptRecordError
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from kafka.record.legacy_records import LegacyRecordBatchBuilder
from kafka.record.memory_records import MemoryRecords
from kafka.record.util import calc_crc32c

from projections.record_batches import BatchRecords

TP = TopicPartition("retail.sales.v1", 3)
GZIP = DefaultRecordBatch.CODEC_GZIP

records_st = st.lists(
    st.tuples(
        st.none() | st.binary(max_size=40),  # key
        st.none() | st.binary(max_size=300),  # value
        st.lists(st.tuples(st.text(max_size=8), st.none() | st.binary(max_size=8)), max_size=3),
    ),
    min_size=1,
    max_size=12,
)
batch_st = st.tuples(
    records_st,
    st.sampled_from(["create-time", "log-append-time", "control", "legacy"]),
    st.sampled_from([0, GZIP]),
    st.integers(0, 3),  # offsets compacted away after the batch's last record
    st.integers(-(2**40), 2**40),  # timestamp step, negative too
)


def _v2_batch(base: int, records: list[Any], kind: str, codec: int, tail: int, step: int) -> bytes:
    builder = DefaultRecordBatchBuilder(
        magic=2, compression_type=codec, is_transactional=0, producer_id=-1,
        producer_epoch=-1, base_sequence=-1, batch_size=1 << 20,
    )  # fmt: skip
    for n, (key, value, headers) in enumerate(records):
        builder.append(n, timestamp=1_770_000_000_000 + n * step, key=key, value=value,
                       headers=headers)  # fmt: skip
    data = bytearray(builder.build())
    struct.pack_into(">q", data, 0, base)
    struct.pack_into(">i", data, DefaultRecordBatch.AFTER_LEN_OFFSET, 7)  # leader epoch
    attributes_at = DefaultRecordBatch.ATTRIBUTES_OFFSET
    (attributes,) = struct.unpack_from(">h", data, attributes_at)
    if kind == "log-append-time":
        attributes |= DefaultRecordBatch.TIMESTAMP_TYPE_MASK
    if kind == "control":
        attributes |= DefaultRecordBatch.CONTROL_MASK
    struct.pack_into(">h", data, attributes_at, attributes)
    # The last offset delta, as a compacted batch keeps it after its last records went.
    struct.pack_into(">i", data, attributes_at + 2, len(records) - 1 + tail)
    struct.pack_into(">I", data, DefaultRecordBatch.CRC_OFFSET, calc_crc32c(data[attributes_at:]))
    return bytes(data)


def _legacy_batch(base: int, records: list[Any]) -> bytes:
    builder = LegacyRecordBatchBuilder(magic=1, compression_type=0, batch_size=1 << 20)
    for n, (key, value, _) in enumerate(records):
        builder.append(base + n, timestamp=1_770_000_000_000 + n, key=key, value=value or b"")
    return bytes(builder.build())


def _fetched(batches: list[Any], first: int) -> tuple[bytes, int]:
    """The bytes of a fetch response's records for `batches`, and the offset after them."""
    data, base = b"", first
    for records, kind, codec, tail, step in batches:
        if kind == "legacy":
            data += _legacy_batch(base, records)
            base += len(records)
        else:
            data += _v2_batch(base, records, kind, codec, tail, step)
            base += len(records) + tail
    return data, base


def _both(data: bytes, fetch_offset: int) -> tuple[Any, Any]:
    theirs = Fetcher.PartitionRecords(fetch_offset, TP, MemoryRecords(data))
    ours = BatchRecords(fetch_offset, TP, MemoryRecords(data))
    return theirs, ours


def _state(part: Any) -> tuple[Any, ...]:
    return bool(part), part.next_fetch_offset, part.leader_epoch


@settings(max_examples=300, deadline=None)
@given(
    st.lists(batch_st, min_size=1, max_size=4),
    st.integers(0, 10_000_000),
    st.integers(0, 11),  # how far into the first batch the fetch starts
    st.lists(st.none() | st.integers(1, 9), min_size=1, max_size=8),
)
def test_batches_decode_to_what_kafka_python_gives(
    batches: list[Any], first: int, into: int, takes: list[int | None]
) -> None:
    data, _ = _fetched(batches, first)
    theirs, ours = _both(data, first + min(into, len(batches[0][0]) - 1))
    for n in [*takes, None, None]:
        if not theirs:  # the fetcher takes nothing more from a drained partition
            break
        assert ours.take(n) == theirs.take(n)
        assert _state(ours) == _state(theirs)
    assert not ours


def test_a_partition_is_drained_after_its_last_batch_with_compacted_offsets_skipped() -> None:
    records: list[Any] = [(b"k", b"v", [])] * 3
    data, after = _fetched([(records, "create-time", 0, 2, 1), (records, "control", 0, 0, 1)], 40)
    part = BatchRecords(40, TP, MemoryRecords(data))
    assert [r.offset for r in part.take(None)] == [40, 41, 42]
    assert not part and part.next_fetch_offset == after == 48


def test_a_corrupt_batch_raises_after_the_records_before_it_and_is_not_skipped() -> None:
    good, _ = _fetched([([(b"k", b"one", [])], "create-time", 0, 0, 1)], 0)
    bad = bytearray(_fetched([([(b"k", b"two", [])], "create-time", 0, 0, 1)], 1)[0])
    bad[-1] ^= 0xFF  # a flipped byte in the record: its CRC no longer matches
    part = BatchRecords(0, TP, MemoryRecords(good + bytes(bad)))
    assert [r.value for r in part.take(None)] == [b"one"]
    with pytest.raises(CorruptRecordError):
        part.take(None)
    assert not part and part.next_fetch_offset == 1  # fetched again from the corrupt batch
