"""The table's rows from the measured results: figure, baseline, ratio, target, met?"""

from __future__ import annotations

from typing import Any

from bench.report import Row, ratio_text
from bench.sizes import Sizes

MB = 1024 * 1024
Results = dict[str, Any]


def _n(value: float) -> str:
    return f"{value:,.0f}"


def _ms(value: float) -> str:
    return f"{value:,.1f} ms" if value < 100 else f"{value:,.0f} ms"


def _ratio(figure: float, baseline: float) -> str:
    return ratio_text(figure / baseline) if baseline else "-"


def _met(ok: bool) -> str:
    return "yes" if ok else "NO"


def _ceiling_name(ceiling: Results) -> str:
    return f"transport ceiling {_n(ceiling['rate'])} calls/s ({ceiling.get('server', 'no-op')})"


def _failed(scenario: str, errors: dict[str, str], phase: str) -> Row:
    return Row(scenario, f"failed: {errors.get(phase, 'not run')}", met="NO")


def flash_rows(results: Results, errors: dict[str, str], sizes: Sizes) -> list[Row]:
    n, buyers = sizes.flash_units, sizes.flash_buyers
    name = f"1. flash sale, N={n:,}, {buyers:,} buyers, {sizes.concurrency} in flight"
    flash = results.get("flash")
    if not flash:
        return [_failed(name, errors, "flash sale on the backend")]
    rate = flash["confirmed_per_second"]
    figure = (
        f"{_n(rate)} confirmed/s; sold out in {flash['sold_out_seconds'] or 0:.1f} s; "
        f"p50 {_ms(flash['p50_ms'])}, p99 {_ms(flash['p99_ms'])}"
    )
    rows = []
    ceiling = results.get("flash_ceiling")
    if ceiling:
        base = ceiling["rate"]
        rows.append(
            Row(name, figure, _ceiling_name(ceiling), _ratio(rate, base),
                ">= 0.70", _met(rate >= 0.7 * base))
        )  # fmt: skip
    else:
        rows.append(_failed(name + " vs transport ceiling", errors, "transport ceiling"))
    naive = results.get("flash_naive")
    if naive:
        base = naive["confirmed_per_second"]
        baseline = f"naive SQLite peer {_n(base)} confirmed/s (p99 {_ms(naive['p99_ms'])})"
        rows.append(Row(name, figure, baseline, _ratio(rate, base), "> 1.00", _met(rate > base)))
    else:
        rows.append(_failed(name + " vs naive peer", errors, "naive peer"))
    group = results.get("flash_group")
    if group:
        base = group["confirmed_per_second"]
        baseline = (
            f"group-commit peer {_n(base)} confirmed/s (grpc.aio and a desk thread, one plain "
            "SQLite commit per batch, no event sourcing; "
            f"{_ratio(base, ceiling['rate'] if ceiling else 0)} of the ceiling)"
        )
        rows.append(Row(name, figure, baseline, _ratio(rate, base), "-", "-"))
    split = results.get("flash_split")
    if split:
        rows.append(_split_row(split, ceiling, sizes))
    outcomes = flash["outcomes"]
    answered = outcomes.get("confirmed", 0) + outcomes.get("sold_out", 0)
    other = {k: v for k, v in outcomes.items() if k not in ("confirmed", "sold_out")}
    ok = flash["confirmed"] == n and flash["on_hand_after"] == 0 and answered == buyers
    rows.append(
        Row(
            "1. flash sale: counts",
            f"{flash['confirmed']:,} confirmed, {outcomes.get('sold_out', 0):,} sold out, "
            f"{answered:,}/{buyers:,} answered, other answers {other or 0}; on_hand after "
            f"{flash['on_hand_after']} ({flash['on_hand_before']} before + {n:,} received)",
            "-", "-", f"exactly {n:,} confirmed, 0 oversold, all answered",
            _met(ok and not other),
        )
    )  # fmt: skip
    return rows


def _split_row(split: Results, ceiling: Results | None, sizes: Sizes) -> Row:
    """The same sale with every role in one process (`run --one-process`)."""
    n = int(split["units"])
    rate = split["confirmed_per_second"]
    other = {k: v for k, v in split["outcomes"].items() if k not in ("confirmed", "sold_out")}
    exact = split["confirmed"] == n and split["on_hand_after"] == 0 and not other
    figure = (
        f"{_n(rate)} confirmed/s; sold out in {split['sold_out_seconds'] or 0:.1f} s; "
        f"p50 {_ms(split['p50_ms'])}, p99 {_ms(split['p99_ms'])}; "
        + (f"exactly {n:,} confirmed, on_hand 0" if exact else f"COUNTS WRONG: {split['outcomes']}")
    )
    name = f"1. flash sale, N={n:,}, every role in one process (`run --one-process`)"
    if not ceiling:
        return Row(name, figure, "ceiling failed", "-", "-", "-")
    base = ceiling["rate"]
    return Row(name, figure, _ceiling_name(ceiling), _ratio(rate, base), "- (the default "
               "shape is above)", "yes" if exact else "NO")  # fmt: skip


def stock_rows(results: Results, errors: dict[str, str], sizes: Sizes) -> list[Row]:
    name = f"3. GetStock, random demo SKUs, {sizes.concurrency} in flight"
    stock = results.get("stock")
    if not stock:
        return [_failed(name, errors, "stock queries on the backend")]
    figure = f"{_n(stock['rate'])} calls/s; p50 {_ms(stock['p50_ms'])}, p99 {_ms(stock['p99_ms'])}"
    ceiling = results.get("stock_ceiling")
    rows = []
    if ceiling:
        base = ceiling["rate"]
        rows.append(
            Row(name, figure, _ceiling_name(ceiling),
                _ratio(stock["rate"], base), ">= 0.80", _met(stock["rate"] >= 0.8 * base))
        )  # fmt: skip
    else:
        rows.append(_failed(name + " vs transport ceiling", errors, "transport ceiling"))
    half = results.get("stock_half")
    if half:
        clean = half["dropped"] == 0 and set(half["outcomes"]) <= {"ok"}
        noop = results.get("stock_half_ceiling")
        baseline = (
            f"no-op grpc.aio server at the same offered rate: p99 {_ms(noop['p99_ms'])} "
            f"(p50 {_ms(noop['p50_ms'])})"
            if noop
            else "-"
        )
        rows.append(
            Row(
                f"3. GetStock at half load, open loop {sizes.half_load_seconds:.0f} s",
                f"p99 {_ms(half['p99_ms'])} (p50 {_ms(half['p50_ms'])}) at "
                f"{_n(half['offered_rate'])} calls/s offered, {_n(half['rate'])}/s done",
                baseline, "-", "p99 < 10 ms", _met(half["p99_ms"] < 10 and clean),
            )
        )  # fmt: skip
    return rows


def memory_rows(results: Results) -> list[Row]:
    rss = results.get("rss")
    if not rss:
        return []
    marks = ", ".join(f"{k} {v / MB:.0f}" for k, v in rss["marks"].items())
    child = rss.get("children", 0)
    other = f"; the relay+projector process: {child / MB:.0f} MB at its peak" if child else ""
    return [
        Row(
            "6. memory: peak RSS of the API process",
            f"{rss['peak'] / MB:.1f} MB (peak per scenario, MB: {marks}){other}",
            "-", "-", "< 300 MB", _met(0 < rss["peak"] < 300 * MB),
        )
    ]  # fmt: skip


def pipeline_rows(results: Results, errors: dict[str, str]) -> list[Row]:
    pipeline = results.get("pipeline")
    if not pipeline:
        return [_failed("4. pipeline", errors, "pipeline stages")]
    relay, raw = pipeline["relay"], pipeline["raw_produce"]
    proj, rawc = pipeline["projector"], pipeline["raw_consume"]
    return [
        Row(
            f"4. relay, {relay['events']:,} events",
            f"{_n(relay['rate'])} events/s",
            f"raw kafka-python produce {_n(raw['rate'])} events/s",
            _ratio(relay["rate"], raw["rate"]), ">= 0.50",
            _met(relay["rate"] >= 0.5 * raw["rate"] and relay["caught_up"]),
        ),
        Row(
            f"4. projector, {proj['records']:,} records ({proj['events']:,} events)",
            f"{_n(proj['rate'])} records/s",
            f"raw consume + batched upsert {_n(rawc['rate'])} records/s",
            _ratio(proj["rate"], rawc["rate"]), ">= 0.50",
            _met(proj["rate"] >= 0.5 * rawc["rate"]),
        ),
    ]  # fmt: skip


def pos_rows(results: Results, errors: dict[str, str], sizes: Sizes) -> list[Row]:
    name = (
        f"2. POS RecordSale, 1-5 lines, {sizes.pos_terminals:,} terminals in "
        f"{sizes.pos_stores} stores, {sizes.concurrency} in flight"
    )
    pos = results.get("pos")
    if not pos:
        return [_failed(name, errors, "POS ingest on the backend")]
    failed = {k: v for k, v in pos["outcomes"].items() if k != "ok"}
    rate = pos.get("end_to_end_rate") or 0.0
    visible = pos.get("visible_seconds")
    figure = (
        f"{_n(rate)} sales/s end to end ({sum(pos['outcomes'].values()):,} sales posted, "
        + (f"all in the views {visible:.1f} s after the first" if visible else "NOT all seen")
        + f"); RecordSale {_n(pos['rate'])}/s, p50 {_ms(pos['p50_ms'])}, "
        f"p99 {_ms(pos['p99_ms'])}; {pos['retries']} retries after ABORTED, failed {failed or 0}"
    )
    ceiling = results.get("pos_ceiling")
    if ceiling:
        base = ceiling["rate"]
        rows = [Row(name, figure, _ceiling_name(ceiling), _ratio(rate, base), ">= 0.60",
                    _met(rate >= 0.6 * base and not failed))]  # fmt: skip
    else:
        rows = [_failed(name + " vs transport ceiling", errors, "transport ceiling")]
    saves = results.get("raw_saves")
    if saves:
        base = saves["saves_per_second"]
        rows.append(
            Row(name, figure,
                f"raw eventsourcing saves of the same events {_n(base)} sales/s "
                f"({saves['events_per_save']} events per transaction, one writer, no gRPC "
                "and no domain)", _ratio(rate, base), "-", "-")
        )  # fmt: skip
    half = results.get("pos_half")
    if half:
        rows.append(
            Row(
                f"2. projection lag at half load, open loop {sizes.half_load_seconds:.0f} s",
                f"lag p50 {_ms(half['lag_p50_ms'])}, p99 {_ms(half['lag_p99_ms'])} at "
                f"{_n(half['offered_rate'])} sales/s offered (RecordSale p99 "
                f"{_ms(half['p99_ms'])}; {half['lag_unseen']} sales never seen)",
                "-", "-", "p99 < 250 ms",
                _met(half["lag_p99_ms"] < 250 and half["lag_unseen"] == 0),
            )
        )  # fmt: skip
    return rows


def rebuild_rows(results: Results, errors: dict[str, str]) -> list[Row]:
    pipeline = results.get("pipeline")
    if not pipeline:
        return [_failed("5. rebuild", errors, "pipeline stages")]
    rebuild = pipeline["rebuild"]
    rows = []
    day = pipeline.get("rebuild_day")
    if day:
        checked = (
            "views equal what was generated"
            if day.get("views_agree") and not day.get("gaps") and not day.get("dead_letters")
            else f"VIEWS DISAGREE: {day.get('disagreements')}, gaps {day.get('gaps')}, "
            f"dead letters {day.get('dead_letters')}"
        )
        rows.append(
            Row(
                f"5. rebuild, {day['events']:,} generated events of a retail day "
                f"({day['records']:,} records, {day['streams']:,} streams; replaying "
                f"processes: {day.get('processes', '?')})",
                f"{_n(day['rate'])} events/s ({day['seconds']:.1f} s); {checked}",
                "-", "-", ">= 30,000 events/s",
                _met(day["rate"] >= 30_000 and bool(day.get("views_agree"))),
            )
        )  # fmt: skip
    # The target is the generated day's (the replay of 1,000,000 events); this run's
    # own events are a smaller replay beside it, or the only one when the day is left out.
    target, met = (
        ("- (the generated day above)", "-") if day
        else (">= 30,000 events/s", _met(rebuild["rate"] >= 30_000))
    )  # fmt: skip
    rows.append(
        Row(
            f"5. rebuild of this run's events, {rebuild['events']:,} events "
            f"({rebuild['records']:,} records)",
            f"{_n(rebuild['rate'])} events/s ({rebuild['seconds']:.1f} s)",
            "-", "-", target, met,
        )
    )  # fmt: skip
    return rows


def rows_for(results: Results, errors: dict[str, str], sizes: Sizes) -> list[Row]:
    return [
        *flash_rows(results, errors, sizes),
        *pos_rows(results, errors, sizes),
        *stock_rows(results, errors, sizes),
        *pipeline_rows(results, errors),
        *rebuild_rows(results, errors),
        *memory_rows(results),
    ]
