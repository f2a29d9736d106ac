"""Decoding of fetched record batches for our consumers, a batch at a time.

kafka-python decodes each fetched record through about a dozen Python calls and three objects
(a record, its consumer record and a generator step). Read alone, the 1,003,885 records of the
bench's generated day cost 13.9-14.8 us of CPU a record that way and 7.2-7.4 us through
`BatchRecords` (two runs each, in turns), which parses a v2 batch's records in place (the
batch checked, decompressed and held by kafka-python's own batch class) into the same
`ConsumerRecord` tuples. Legacy (v0/v1) batches are read with kafka-python's records.

`faster_records(consumer)` puts it in a consumer that has no deserializers and reads
uncommitted records, as ours do; any other consumer keeps kafka-python's decoding, which also
handles deserializers and aborted transactions. tests/unit/test_record_batches.py holds it
to kafka-python's results.
"""

from __future__ import annotations

from typing import Any

from kafka import KafkaConsumer
from kafka.consumer.fetcher import ConsumerRecord, Fetcher
from kafka.errors import CorruptRecordError
from kafka.record.default_records import DefaultRecordBatch
from kafka.record.util import decode_varint

_READ_UNCOMMITTED = 0
_LOG_APPEND_TIME = 1


def faster_records(consumer: KafkaConsumer) -> KafkaConsumer:
    """`consumer`, made to decode fetched batches with `BatchRecords` where it can."""
    fetcher = consumer._fetcher  # kafka-python has no public hook for this
    config = fetcher.config
    plain = config["key_deserializer"] is None and config["value_deserializer"] is None
    if plain and fetcher._isolation_level == _READ_UNCOMMITTED:
        fetcher.PartitionRecords = BatchRecords
    return consumer


class BatchRecords(Fetcher.PartitionRecords):  # type: ignore[misc]
    """One partition's fetched records, decoded a batch at a time as `take` needs them.

    Keeps kafka-python's contract for the fetcher: `next_fetch_offset` is the offset after
    the last record taken (after the last batch once all are taken, which skips compacted
    offsets), records below the fetch offset are skipped, a partition is drained when its
    records are all taken, and a corrupt batch raises `CorruptRecordError` after the
    records before it were returned."""

    # Set by kafka-python's constructor, typed here for ours.
    next_fetch_offset: int
    leader_epoch: int
    records_read: int
    bytes_read: int
    record_iterator: Any
    _next_inline_exception: Exception | None

    def __init__(self, fetch_offset: int, tp: Any, records: Any, **options: Any) -> None:
        super().__init__(fetch_offset, tp, records, **options)
        self._records = records
        self._taken: list[Any] = []  # the current batch's records, taken up to `_next`
        self._next = 0
        self._after = fetch_offset  # the offset after the current batch

    def take(self, n: int | None = None) -> list[Any]:
        error = self._next_inline_exception
        if error is not None:  # a corrupt batch after the records the last call returned
            self.drain()
            raise error
        out: list[Any] = []
        while self.record_iterator is not None and (n is None or len(out) < n):
            if self._next == len(self._taken):
                try:
                    more = self._decode_next()
                except Exception as failed:
                    if not out:
                        self.drain()  # fetched again from the corrupt batch, failing again
                        raise
                    self._next_inline_exception = failed
                    break
                if not more:
                    self.drain()
                continue
            end = len(self._taken)
            if n is not None:
                end = min(end, self._next + n - len(out))
            out.extend(self._taken[self._next : end])
            self._next = end
            self.next_fetch_offset = out[-1].offset + 1
        return out

    def _decode_next(self) -> bool:
        """Decodes the next batch that has records to take; False when none is left. The
        fetch offset moves past each batch left behind (compacted offsets included)."""
        while True:
            self.next_fetch_offset = max(self.next_fetch_offset, self._after)
            batch = self._records.next_batch()
            if batch is None:
                return False
            if self.check_crcs and not batch.validate_crc():
                raise CorruptRecordError(
                    f"Record batch for partition {self.topic_partition} at offset "
                    f"{batch.base_offset} failed crc check"
                )
            if isinstance(batch, DefaultRecordBatch):
                self.leader_epoch = batch.leader_epoch
                # Transaction markers (control batches) hold nothing for the caller.
                taken = [] if batch.is_control_batch else self._decode(batch)
                # The batch's last offset counts even when compaction removed its record.
                self._after = batch.next_offset
            else:
                taken = self._legacy(batch)
            self.records_read += len(taken)
            self._taken, self._next = taken, 0
            if taken:
                return True

    def _decode(self, batch: DefaultRecordBatch) -> list[Any]:
        """A v2 batch's records from `fetch_offset` on, as ConsumerRecords."""
        iter(batch)  # decompresses the records in place, as kafka-python's iteration does
        buf = memoryview(batch._buffer)
        pos = batch._pos
        varint = decode_varint
        new = tuple.__new__  # a namedtuple made as its own __new__ does, without a Python call
        topic, partition = self.topic_partition.topic, self.topic_partition.partition
        epoch, base, skip_below = batch.leader_epoch, batch.base_offset, self.fetch_offset
        kind = batch.timestamp_type
        appended = kind == _LOG_APPEND_TIME  # the broker's time, the same for the whole batch
        timestamp = batch.max_timestamp if appended else batch.first_timestamp
        read_bytes = 0
        out = []
        try:
            for _ in range(batch.records_count):
                length, pos = varint(buf, pos)
                start = pos
                delta_time, pos = varint(buf, pos + 1)  # after the attributes, a byte unused
                delta, pos = varint(buf, pos)
                key_size, pos = varint(buf, pos)
                if key_size >= 0:
                    key = buf[pos : pos + key_size].tobytes()
                    pos += key_size
                else:
                    key = None
                value_size, pos = varint(buf, pos)
                if value_size >= 0:
                    value = buf[pos : pos + value_size].tobytes()
                    pos += value_size
                else:
                    value = None
                if buf[pos] == 0:  # no headers
                    headers: list[tuple[str, bytes | None]] = []
                    header_size, pos = -1, pos + 1
                else:
                    headers, header_size, pos = _headers(buf, pos)
                if pos - start != length:
                    raise CorruptRecordError(
                        f"Invalid record size: expected {length} bytes, read {pos - start}"
                    )
                offset = base + delta
                if offset >= skip_below:
                    read_bytes += length
                    out.append(
                        new(ConsumerRecord, (
                            topic, partition, epoch, offset,
                            timestamp if appended else timestamp + delta_time,
                            kind, key, value, headers, None, key_size, value_size, header_size,
                        ))
                    )  # fmt: skip
        except (IndexError, ValueError) as error:
            raise CorruptRecordError(f"Found invalid record structure: {error!r}") from error
        if pos != len(buf):
            raise CorruptRecordError(f"{len(buf) - pos} unconsumed bytes after all records")
        self.bytes_read += read_bytes
        return out

    def _legacy(self, batch: Any) -> list[Any]:
        """A v0/v1 batch's records from `fetch_offset` on, read with kafka-python's records."""
        topic, partition = self.topic_partition.topic, self.topic_partition.partition
        out = []
        for record in batch:
            if self.check_crcs and not record.validate_crc():
                raise CorruptRecordError(
                    f"Record for partition {self.topic_partition} at offset {record.offset} "
                    "failed crc check"
                )
            if record.offset < self.fetch_offset:
                continue
            key, value = record.key, record.value
            self.bytes_read += record.size_in_bytes
            out.append(
                ConsumerRecord(
                    topic, partition, self.leader_epoch, record.offset, record.timestamp,
                    record.timestamp_type, key, value, record.headers, record.checksum,
                    -1 if key is None else len(key), -1 if value is None else len(value), -1,
                )
            )  # fmt: skip
        return out


def _headers(buf: memoryview, pos: int) -> tuple[list[tuple[str, bytes | None]], int, int]:
    """A record's headers from `pos` (their count): the pairs, their size as kafka-python
    counts it, and the position after them."""
    count, pos = decode_varint(buf, pos)
    if count < 0:
        raise CorruptRecordError(f"Found invalid number of record headers {count}")
    headers: list[tuple[str, bytes | None]] = []
    size = 0
    for _ in range(count):
        length, pos = decode_varint(buf, pos)
        if length < 0:
            raise CorruptRecordError(f"Invalid negative header key size {length}")
        name = str(buf[pos : pos + length], "utf-8")
        pos += length
        length, pos = decode_varint(buf, pos)
        value = buf[pos : pos + length].tobytes() if length >= 0 else None
        pos += max(length, 0)
        headers.append((name, value))
        size += len(name.encode("utf-8")) + (len(value) if value is not None else 0)
    return headers, size, pos
