"""The benchmark's runs made in parts: merged into one run without losing a call."""

from __future__ import annotations

from typing import Any, NamedTuple

import pytest

from bench.common import merged_flash, merged_runs
from bench.docs import _parts_overlap, _sold_out_tail, projector_bound
from bench.pipeline import merged
from bench.rows import rebuild_rows


def _part(rate: float, seconds: float, latencies: list[float], load: float) -> dict[str, object]:
    return {
        "calls": len(latencies), "seconds": seconds, "rate": rate,
        "outcomes": {"ok": len(latencies)}, "dropped": 1, "load_cores": load,
        "server_cores": 2 * load, "p99_ms": max(latencies),
        "latencies_ms": latencies, "sample_hex": "ab",
    }  # fmt: skip


def test_parts_of_a_load_run_add_up_and_percentiles_cover_every_call() -> None:
    fast = _part(4.0, 1.0, [1.0, 1.0, 1.0, 1.0], load=0.5)
    slow = _part(2.0, 3.0, [9.0] * 6, load=0.9)

    run = merged_runs([fast, slow])

    assert run["calls"] == 10 and run["seconds"] == 4.0 and run["rate"] == 2.5
    assert run["outcomes"] == {"ok": 10} and run["dropped"] == 2
    assert run["p50_ms"] == 9.0 and run["max_ms"] == 9.0 and run["count"] == 10.0
    assert abs(run["load_cores"] - (0.5 * 1 + 0.9 * 3) / 4) < 1e-9
    assert abs(run["server_cores"] - 2 * run["load_cores"]) < 1e-9
    assert run["parts"] == [{"rate": 4.0, "p99_ms": 1.0}, {"rate": 2.0, "p99_ms": 9.0}]
    assert "latencies_ms" not in run and run["sample_hex"] == "ab"


def test_rounds_of_a_stage_give_the_rate_over_their_summed_time() -> None:
    rounds = [
        {"records": 100, "timed": 90, "seconds": 1.0, "cpu_seconds": 0.5, "rate": 90.0,
         "cpu_per_record": 0.5 / 90, "caught_up": True},
        {"records": 100, "timed": 90, "seconds": 2.0, "cpu_seconds": 1.0, "rate": 45.0,
         "cpu_per_record": 1.0 / 90, "caught_up": False},
    ]  # fmt: skip

    stage = merged(rounds, "timed")

    assert stage["rate"] == 60.0  # 180 records in 3 s, not the rounds' mean rate 67.5
    assert stage["records"] == 100 and stage["seconds"] == 1.5 and stage["cpu_seconds"] == 0.75
    assert abs(stage["cpu_per_record"] - 1.5 / 180) < 1e-12
    assert stage["caught_up"] is False and stage["rounds"] == [90.0, 45.0]


def test_halves_of_a_flash_sale_sell_every_unit_over_their_summed_time() -> None:
    first = {**_part(10.0, 2.0, [5.0] * 20, load=0.5), "units": 15, "buyers": 20,
             "confirmed": 15, "sold_out_seconds": 1.5}  # fmt: skip
    second = {**_part(10.0, 2.0, [7.0] * 20, load=0.5), "units": 15, "buyers": 20,
              "confirmed": 15, "sold_out_seconds": 1.5}  # fmt: skip

    sale = merged_flash([first, second])

    assert sale["units"] == 30 and sale["buyers"] == 40 and sale["confirmed"] == 30
    assert sale["sold_out_seconds"] == 3.0 and sale["confirmed_per_second"] == 10.0
    assert sale["p50_ms"] == 5.0 and sale["p99_ms"] == 7.0 and sale["calls"] == 40
    unsold = merged_flash([first, {**second, "sold_out_seconds": None}])
    assert unsold["sold_out_seconds"] is None and unsold["confirmed_per_second"] == 0.0


def test_the_rebuild_target_is_the_generated_days_when_there_is_one() -> None:
    run = {"events": 1_000, "records": 1_010, "rate": 20_000.0, "seconds": 0.05}
    day = {"events": 1_000_000, "records": 1_002_000, "streams": 300_000, "rate": 31_000.0,
           "seconds": 32.3, "views_agree": True, "gaps": 0, "dead_letters": 0}  # fmt: skip

    with_day = rebuild_rows({"pipeline": {"rebuild": run, "rebuild_day": day}}, {})
    alone = rebuild_rows({"pipeline": {"rebuild": run}}, {})

    assert [(row.target, row.met) for row in with_day] == [
        (">= 30,000 events/s", "yes"),
        ("- (the generated day above)", "-"),
    ]
    assert [(row.target, row.met) for row in alone] == [(">= 30,000 events/s", "NO")]


def test_the_sold_out_tail_is_the_buyers_after_the_last_unit_over_their_time() -> None:
    sale = {"calls": 200_000, "units": 100_000, "seconds": 60.0, "sold_out_seconds": 40.0}

    text = _sold_out_tail({"flash": sale}, ceiling=10_000.0)

    assert "other 100,000 buyers" in text and "at 5,000 calls/s, 0.50 of the ceiling" in text
    assert _sold_out_tail({"flash": {**sale, "sold_out_seconds": None}}, 10_000.0) == ""


def test_a_ratio_is_cut_to_two_decimals_so_a_near_miss_never_shows_as_the_target() -> None:
    from bench.report import ratio_text  # noqa: PLC0415

    assert ratio_text(11_712 / 23_592) == "0.49"  # 0.4964, missed 0.50
    assert ratio_text(0.5) == "0.50"
    assert ratio_text(0.29) == "0.29"  # 28.999... in binary: not cut to 0.28
    assert ratio_text(0.7) == "0.70"
    assert ratio_text(1.349) == "1.34"


def test_the_projector_bound_is_the_raw_reading_plus_the_rows_floor() -> None:
    # Raw: 100,000 records at 50,000/s (20 us each), 0.4 s of it in SQL (4 us a record);
    # inserting the views' rows alone: 14 us a record; the projector: 20,000 records/s.
    bound = projector_bound(
        {"rate": 20_000.0},
        {"rate": 50_000.0, "timed": 100_000, "sql_seconds": 0.4},
        {"per_record": 14e-6},
    )
    assert round(bound["reading"] * 1e6, 6) == 16.0
    assert round(bound["least"] * 1e6, 6) == 30.0
    assert round(bound["best_ratio"], 6) == round(20 / 30, 6)
    assert round(bound["beyond"] * 1e6, 6) == 20.0  # 50 us a record, 30 of them needed
    assert round(bound["room"] * 1e6, 6) == 10.0  # 40 us a record is exactly 0.50
    assert projector_bound({"rate": 1.0}, {"rate": 1.0, "timed": 0}, {}) == {}


def test_half_load_parts_overlap_when_a_no_op_part_was_as_slow_as_a_backend_part() -> None:
    def run(*p99s: float) -> dict[str, Any]:
        return {"parts": [{"rate": 1000.0, "p99_ms": p99} for p99 in p99s]}

    assert _parts_overlap(run(18.3, 11.1), run(9.7, 11.4))
    assert not _parts_overlap(run(18.3, 11.1), run(9.7, 7.9))
    assert not _parts_overlap(run(), run(9.7))


def test_the_flash_sale_is_explained_only_when_its_target_is_missed() -> None:
    from bench.docs import _analysis  # noqa: PLC0415

    def flash_text(confirmed: float, naive: float) -> list[str]:
        results = {
            "flash": {"confirmed_per_second": confirmed, "rate": confirmed},
            "flash_ceiling": {"rate": 2_000.0},
            "flash_naive": {"confirmed_per_second": naive},
        }
        return [line for line in _analysis(results) if line.startswith("- Flash sale")]

    assert flash_text(1_400.0, 1_000.0) == []  # 0.70 of the ceiling, above the naive peer
    assert len(flash_text(1_399.0, 1_000.0)) == 1
    assert len(flash_text(1_500.0, 1_600.0)) == 1  # below the naive peer


def test_the_desk_hand_off_is_described_by_how_it_compares_with_the_plain_no_op() -> None:
    from bench.docs import _handing  # noqa: PLC0415

    assert "1.11 times as fast" in _handing(2_965.0, 2_665.0)
    assert "as fast as the plain" in _handing(2_600.0, 2_665.0)
    assert "reaches 0.80 of the plain" in _handing(2_132.0, 2_665.0)
    assert _handing(0.0, 2_665.0) == ""


def test_the_group_commit_peer_is_compared_per_call_only_when_the_backend_costs_more() -> None:
    from bench.docs import _group_peer  # noqa: PLC0415

    def text(api_per_call: float) -> str:
        peer = {"confirmed_per_second": 2_457.0, "rate": 2_500.0, "server_cores": 1.07}
        return _group_peer({"flash_group": peer}, 3_061.0, api_per_call)

    assert "0.052 ms more per call in the API process" in text(0.000480)
    assert "more per call" not in text(0.000388)
    assert "0.388 ms a call is not above the peer's" in text(0.000388)
    assert _group_peer({}, 3_061.0, 0.000388) == ""


def test_the_flash_sales_cores_are_split_at_the_moment_the_last_unit_sold() -> None:
    from bench.stack import TimePoint, phase_cores  # noqa: PLC0415

    # API, relay+projector, broker and machine CPU seconds so far, every half second: the
    # API at 0.7 of a core until t=101, then at 1.0 while the others fall idle.
    points = [TimePoint(100.0, 0.0, 0.0, 0.0, 0.0), TimePoint(100.5, 0.35, 0.15, 0.2, 0.95)]
    points += [TimePoint(101.0, 0.7, 0.3, 0.4, 1.9), TimePoint(101.5, 1.2, 0.3, 0.4, 2.6)]
    points += [TimePoint(102.0, 1.7, 0.31, 0.41, 3.3)]

    phases = phase_cores(points, cut=101.2)

    before, after = phases["before"], phases["after"]
    assert before["seconds"] == 1.0 and after["seconds"] == 0.5
    assert abs(before["api"] - 0.7) < 1e-9 and abs(before["machine"] - 1.9) < 1e-9
    assert abs(before["pipeline"] - 0.3) < 1e-9 and abs(before["broker"] - 0.4) < 1e-9
    assert abs(after["api"] - 1.0) < 1e-9 and abs(after["pipeline"] - 0.02) < 1e-9
    assert phase_cores(points, cut=99.0).keys() == {"after"}  # nothing sampled before it
    assert phase_cores(points[:1], cut=100.0) == {}


def test_a_sale_held_back_by_its_share_of_the_cores_is_told_from_one_held_back_by_work() -> None:
    from bench.docs import _flash_phases, _selling_share  # noqa: PLC0415

    selling = {"seconds": 20.0, "api": 0.72, "pipeline": 0.34, "broker": 0.44, "machine": 1.96}
    tail = {"seconds": 13.0, "api": 0.98, "pipeline": 0.03, "broker": 0.04, "machine": 1.6}
    phases = {"before": selling, "after": tail}
    flash = {"calls": 60_000, "calls_until_sold_out": 30_000, "phases": phases}

    # 0.72 cores for 20 s over 30,000 calls: 0.48 ms a call. At a ceiling of 2,000 calls/s
    # 0.70 allows 0.714 ms a call: that fits, and a whole core would give 2,083 calls/s.
    share = _selling_share(flash, 0.000500, 2_000.0)
    assert "0.480 ms of CPU a call (the fastest no-op server 0.500 ms), within the 0.714" in share
    assert "2,083 calls/s, 1.04 of the ceiling: the API's share of the cores held" in share
    # At a ceiling of 3,000 calls/s 0.70 allows 0.476 ms: 0.480 is over it.
    assert "the work per purchase is what costs" in _selling_share(flash, 0.000400, 3_000.0)
    assert _selling_share({"calls": 60_000}, 0.000500, 2_000.0) == ""
    text = _flash_phases({"flash": flash})
    assert "the relay+projector 0.34, the broker 0.44, the load process and the rest 0.46" in text
    assert "in the sold-out tail after it (30,000 calls): the API process 0.98 cores" in text
    assert _flash_phases({"flash": {"calls": 5}}) == ""


def test_the_header_says_what_the_hypervisor_withheld_and_when_most() -> None:
    from bench.docs import _steal_text  # noqa: PLC0415

    stolen = {"steal_cores": 0.03, "steal_peak": 0.71, "steal_peak_at": 1_796_163_904.5}
    assert _steal_text(stolen) == (
        "The hypervisor withheld 0.03 cores on average (steal time), at most 0.71 over a "
        "second (at 22:25:04 UTC). "
    )
    assert _steal_text({"steal_cores": 0.0, "steal_peak": 0.0, "steal_peak_at": 0.0}) == (
        "The hypervisor withheld 0.00 cores on average (steal time). "
    )
    assert _steal_text({"average_cores": 0.02}) == ""


def test_the_machines_busy_time_leaves_out_idle_io_wait_steal_and_guest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import psutil  # type: ignore[import-untyped]  # noqa: PLC0415

    import bench.stack  # noqa: PLC0415

    class Times(NamedTuple):
        user: float = 10.0
        nice: float = 1.0
        system: float = 4.0
        idle: float = 50.0
        iowait: float = 2.0
        irq: float = 0.5
        softirq: float = 0.5
        steal: float = 3.0
        guest: float = 1.5
        guest_nice: float = 0.0

    monkeypatch.setattr(psutil, "cpu_times", Times)

    assert bench.stack._busy() == 16.0  # user, nice, system, irq, softirq
    assert bench.stack._steal() == 3.0


def test_what_would_reach_the_flash_target_follows_the_cpu_a_call_it_is_measured_by() -> None:
    from bench.docs import _analysis  # noqa: PLC0415

    def reach(api_cores: float, phases: dict[str, Any] | None) -> str:
        flash: dict[str, Any] = {"confirmed_per_second": 1_200.0, "rate": 2_000.0, "calls": 200_000}
        if phases is not None:
            flash |= {"calls_until_sold_out": 100_000, "phases": {"before": phases}}
        results = {
            "flash": flash, "flash_ceiling": {"rate": 2_000.0, "server_cores": 0.9},
            "flash_naive": {"confirmed_per_second": 1_000.0},
            "rss": {"cpu": {"flash": api_cores}},
        }  # fmt: skip
        line = next(line for line in _analysis(results) if line.startswith("- Flash sale"))
        return line[line.index("What would reach") :]

    # 0.70 of 2,000 calls/s allows 0.714 ms a call.
    assert "a whole core for the API" in reach(1.0, None)  # 0.500 ms a call
    assert "less Python per purchase" in reach(1.6, None)  # 0.800 ms, nothing sampled
    selling = {"seconds": 80.0, "api": 0.95, "pipeline": 0.3, "broker": 0.1, "machine": 1.9}
    # 0.760 ms a call until the last unit, though 0.500 over the whole run.
    assert "less Python per purchase" in reach(1.0, selling)
