"""Which cores the API process keeps its threads on (RETAIL_API_CPUS)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from services.affinity import AffinityError, api_cores, pipeline_cores
from services.config import Settings, SettingsError


def test_auto_keeps_the_api_on_one_core_picked_by_process_id_when_the_pipeline_is_apart() -> None:
    assert api_cores("auto", {0, 1}, pid=4242, pipeline_apart=True) == frozenset({0})
    assert api_cores("auto", {0, 1}, pid=4243, pipeline_apart=True) == frozenset({1})
    assert api_cores("", {2, 5, 7}, pid=4, pipeline_apart=True) == frozenset({5})


def test_auto_leaves_the_threads_be_on_one_core_or_with_every_role_in_one_process() -> None:
    assert api_cores("auto", {3}, pid=1, pipeline_apart=True) is None
    assert api_cores("auto", {0, 1}, pid=1, pipeline_apart=False) is None
    assert api_cores("off", {0, 1}, pid=1, pipeline_apart=True) is None


def test_named_cores_are_used_as_given_and_must_be_allowed() -> None:
    assert api_cores("1", {0, 1}, pid=0, pipeline_apart=False) == frozenset({1})
    assert api_cores(" 2,3 ", {0, 1, 2, 3}, pid=0, pipeline_apart=True) == frozenset({2, 3})
    with pytest.raises(AffinityError, match="may only use cores 0,1"):
        api_cores("4", {0, 1}, pid=0, pipeline_apart=True)
    with pytest.raises(AffinityError, match="choose 'auto', 'off' or core numbers"):
        api_cores("first", {0, 1}, pid=0, pipeline_apart=True)


def test_the_relay_and_projector_get_the_cores_the_api_is_not_kept_on() -> None:
    assert pipeline_cores({0, 1}, frozenset({0})) == frozenset({1})
    assert pipeline_cores({0, 1, 2, 3}, frozenset({2})) == frozenset({0, 1, 3})
    assert pipeline_cores({0, 1}, None) is None  # left where the API process may run
    assert pipeline_cores({0, 1}, frozenset({0, 1})) is None  # none left: share them


def test_a_wrong_setting_is_refused_before_anything_starts() -> None:
    with pytest.raises(SettingsError, match="RETAIL_API_CPUS='fast'"):
        Settings.from_env({"RETAIL_API_CPUS": "fast"})
    assert Settings.from_env({}).api_cpus == "auto"
    assert Settings.from_env({"RETAIL_API_CPUS": "off"}).api_cpus == "off"


def test_every_thread_of_the_process_moves_and_later_threads_follow() -> None:
    # In a process of its own: the test runner's threads stay where they are.
    script = textwrap.dedent(
        """
        import os, threading
        from services.affinity import keep_threads_on
        every = sorted(os.sched_getaffinity(0))
        core = frozenset({every[-1]})
        started, stop = threading.Event(), threading.Event()
        def wait():
            started.set()
            stop.wait()
        before = threading.Thread(target=wait)
        before.start()
        started.wait()
        moved = keep_threads_on(core)
        after = threading.Thread(target=stop.wait)
        after.start()
        tasks = [int(t) for t in os.listdir("/proc/self/task")]
        cores = {frozenset(os.sched_getaffinity(t)) for t in tasks}
        stop.set()
        before.join()
        after.join()
        assert moved >= 2, moved
        assert len(tasks) >= 3, tasks
        assert cores == {core}, cores
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
