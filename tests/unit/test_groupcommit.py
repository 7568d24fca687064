"""Group commit: who writes which batch, and who gets which answer."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from bridge.groupcommit import GroupCommit, Job


def test_a_lone_write_is_written_at_once_by_its_own_thread() -> None:
    writers: list[tuple[str, list[int]]] = []

    def write(jobs: Sequence[Job[int, int]]) -> None:
        writers.append((threading.current_thread().name, [j.work for j in jobs]))
        for job in jobs:
            job.finish(job.work * 10)

    commit: GroupCommit[int, int] = GroupCommit(write)
    assert commit.submit(1) == 10
    assert commit.submit(2) == 20
    assert writers == [
        (threading.current_thread().name, [1]),
        (threading.current_thread().name, [2]),
    ]


def test_writes_that_arrive_during_a_batch_share_the_next_one() -> None:
    first_started, release = threading.Event(), threading.Event()
    batches: list[list[int]] = []

    def write(jobs: Sequence[Job[int, int]]) -> None:
        batches.append([j.work for j in jobs])
        if jobs[0].work == 0:
            first_started.set()
            assert release.wait(10)
        for job in jobs:
            job.finish(-job.work)

    commit: GroupCommit[int, int] = GroupCommit(write)
    with ThreadPoolExecutor(6) as pool:
        first = pool.submit(commit.submit, 0)
        assert first_started.wait(10)
        rest = [pool.submit(commit.submit, n) for n in range(1, 6)]
        while len(commit._queue) < 5:  # all five wait behind the first batch
            threading.Event().wait(0.01)
        assert not any(f.done() for f in rest)  # nobody is answered before its commit
        release.set()
        assert [f.result(10) for f in [first, *rest]] == [0, -1, -2, -3, -4, -5]
    assert batches[0] == [0]
    assert sorted(batches[1]) == [1, 2, 3, 4, 5] and len(batches) == 2


def test_a_batch_is_at_most_max_batch_long() -> None:
    started, release = threading.Event(), threading.Event()
    sizes: list[int] = []

    def write(jobs: Sequence[Job[int, int]]) -> None:
        sizes.append(len(jobs))
        if jobs[0].work == 0:
            started.set()
            assert release.wait(10)
        for job in jobs:
            job.finish(job.work)

    commit: GroupCommit[int, int] = GroupCommit(write, max_batch=2)
    with ThreadPoolExecutor(6) as pool:
        first = pool.submit(commit.submit, 0)
        assert started.wait(10)
        rest = [pool.submit(commit.submit, n) for n in range(1, 6)]
        while len(commit._queue) < 5:
            threading.Event().wait(0.01)
        release.set()
        assert sorted(f.result(10) for f in [first, *rest]) == [0, 1, 2, 3, 4, 5]
    assert sizes == [1, 2, 2, 1]


def test_errors_reach_their_own_jobs_and_the_next_batch_still_runs() -> None:
    def write(jobs: Sequence[Job[str, str]]) -> None:
        for job in jobs:
            if job.work == "bad":
                job.finish(error=ValueError("bad job"))
            elif job.work == "crash":
                raise OSError("disk gone")
            else:
                job.finish(job.work.upper())

    commit: GroupCommit[str, str] = GroupCommit(write)
    with pytest.raises(ValueError, match="bad job"):
        commit.submit("bad")
    with pytest.raises(OSError, match="disk gone"):
        commit.submit("crash")
    assert commit.submit("ok") == "OK"  # leadership was given back after the crash


def test_a_job_the_writer_forgets_gets_an_error_not_a_hang() -> None:
    commit: GroupCommit[int, int] = GroupCommit(lambda jobs: None)
    with pytest.raises(RuntimeError, match="unanswered"):
        commit.submit(1)
