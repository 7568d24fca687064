"""Group commit: the writes that arrive together share one transaction, and one commit.

Every practice system's post ends in a transaction that must be durable before the 201,
and on SQLite there is one writer at a time: with one transaction per post, the posts
queue for the write lock and each pays its own fsync. Here the threads that arrive
while a batch is being written wait for it to end; the first of them then writes all
that waited, as one batch, while the next ones queue:

    thread A --submit--> leads batch [A]        --commit--> A answered, hands over to B
    thread B --submit--> waits ...........................> leads batch [B, C, D] ...
    thread C, D --submit--> wait ................................................> answered

There is no writer thread of its own and no timer: a lone write is written at once, by
the thread that submitted it. ``write`` answers each job: a result only once the batch
is committed, an error as soon as it knows one. Which jobs of a batch fail alone is for
``write`` to decide (the store writes each under a savepoint).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Job(Generic[T, R]):
    """One write waiting for its batch: what to write, then its answer or error."""

    def __init__(self, work: T) -> None:
        self.work = work
        self.result: R | None = None
        self.error: BaseException | None = None
        self.finished = False
        self.wake = threading.Event()

    def finish(self, result: R | None = None, error: BaseException | None = None) -> None:
        self.result, self.error, self.finished = result, error, True
        self.wake.set()


class GroupCommit(Generic[T, R]):
    """Runs ``write(jobs)`` for the jobs that arrive together; ``write`` must finish every
    job it is given (a job it leaves unfinished gets an error)."""

    def __init__(self, write: Callable[[Sequence[Job[T, R]]], None], max_batch: int = 64) -> None:
        self._write = write
        self._max_batch = max_batch
        self._lock = threading.Lock()
        self._queue: list[Job[T, R]] = []
        self._busy = False  # a thread is writing a batch (the leader)

    def submit(self, work: T) -> R:
        """Write ``work`` with whatever else is waiting; its answer once committed."""
        job: Job[T, R] = Job(work)
        with self._lock:
            self._queue.append(job)
            lead = not self._busy
            self._busy = True
        if not lead:
            job.wake.wait()
            lead = not job.finished  # woken to lead the next batch
        if lead:
            self._lead()
        if job.error is not None:
            raise job.error
        return job.result  # type: ignore[return-value]

    def _lead(self) -> None:
        with self._lock:
            batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
        try:
            self._write(batch)
        except BaseException as exc:
            for job in batch:
                if not job.finished:
                    job.finish(error=exc)
            if not isinstance(exc, Exception):
                raise  # KeyboardInterrupt, SystemExit: not only the jobs' business
        finally:
            for job in batch:
                if not job.finished:
                    job.finish(error=RuntimeError("group commit: a job was left unanswered"))
            with self._lock:
                if self._queue:
                    self._queue[0].wake.set()  # it leads the next batch
                else:
                    self._busy = False
