"""``Batcher``: requests wait in one bounded queue and run through the model in batches.

A batch starts as soon as ``max_batch`` requests wait, or when the oldest has waited
``wait_s`` (so a lone request pays at most ``wait_s``, and under load the queue drains in
full batches with no waiting at all). ``workers`` batches run at once, each in its own
thread (the model's weights are shared). The queue holds at most ``capacity`` requests:
one more is refused at once (``QueueFull``, which the app answers 503 with Retry-After)
rather than left to wait past its timeout. A request whose future is cancelled (its
client went away, or it timed out) leaves the queue at once: no work is done for it.
A batch that has started cannot be stopped; its cancelled requests' results are dropped.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable


class QueueFull(Exception):
    """The queue holds ``capacity`` requests; ``retry_after`` seconds is when a slot is
    likely to be free."""

    def __init__(self, capacity: int, retry_after: int):
        super().__init__(f"the queue is full ({capacity} requests waiting): retry in {retry_after} s")
        self.retry_after = retry_after


@dataclass
class _Job:
    item: Any
    future: asyncio.Future
    queued: float = field(default_factory=time.monotonic)


class Batcher:
    """``await batcher.submit(item)`` -> ``run([item, ...])[i]``, batched (see the module
    notes). ``on_batch(size, seconds)`` is told about every batch run (for the metrics).
    ``start()`` and ``stop()`` run on the event loop that submits."""

    def __init__(self, run: Callable[[list], list], max_batch: int, wait_s: float, capacity: int, workers: int = 1,
                 on_batch: Callable[[int, float], None] | None = None):
        self.run, self.max_batch, self.wait_s = run, max_batch, wait_s
        self.capacity, self.workers = capacity, workers
        self.on_batch = on_batch
        self._pending: deque[_Job] = deque()
        self._arrived: asyncio.Event | None = None
        self._tasks: list[asyncio.Task] = []
        self._executor: ThreadPoolExecutor | None = None
        self._batch_seconds = 0.0  # moving average, for Retry-After

    @property
    def depth(self) -> int:
        """Requests waiting (not counting those in a running batch)."""
        return len(self._pending)

    def full(self) -> bool:
        return len(self._pending) >= self.capacity

    def retry_after(self) -> int:
        """Seconds until the queue has likely drained by one batch per worker: at least 1."""
        batches = math.ceil(len(self._pending) / (self.max_batch * self.workers))
        return max(1, math.ceil(batches * self._batch_seconds))

    def start(self) -> None:
        self._arrived = asyncio.Event()
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="segformer-lab-batch")
        self._tasks = [asyncio.create_task(self._collect()) for _ in range(self.workers)]

    async def stop(self) -> None:
        """Stops taking batches (a running one finishes first) and fails what still waits."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        while self._pending:
            job = self._pending.popleft()
            if not job.future.done():
                job.future.set_exception(RuntimeError("the server is shutting down"))
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    def submit(self, item: Any) -> asyncio.Future:
        """A future for ``item``'s result; cancelling it takes ``item`` out of the queue."""
        if self._arrived is None:
            raise RuntimeError("Batcher.submit before start()")
        if self.full():
            raise QueueFull(self.capacity, self.retry_after())
        job = _Job(item, asyncio.get_running_loop().create_future())
        self._pending.append(job)
        job.future.add_done_callback(lambda future: self._forget(job) if future.cancelled() else None)
        self._arrived.set()
        return job.future

    def _forget(self, job: _Job) -> None:
        if job in self._pending:
            self._pending.remove(job)

    async def _next_batch(self) -> list[_Job]:
        """Waits for the first request, then for a full batch or the oldest's ``wait_s``."""
        while True:
            while not self._pending:
                self._arrived.clear()
                await self._arrived.wait()
            deadline = self._pending[0].queued + self.wait_s
            while len(self._pending) < self.max_batch and (remaining := deadline - time.monotonic()) > 0:
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), remaining)
                except asyncio.TimeoutError:
                    break
            if self._pending:  # else: all cancelled while waiting
                return [self._pending.popleft() for _ in range(min(self.max_batch, len(self._pending)))]

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            started = time.perf_counter()
            try:
                results = await loop.run_in_executor(self._executor, self.run, [job.item for job in batch])
            except (Exception, asyncio.CancelledError) as err:  # handed to each waiting request
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(RuntimeError("the server is shutting down")
                                                 if isinstance(err, asyncio.CancelledError) else err)
                if isinstance(err, asyncio.CancelledError):
                    raise
                continue
            seconds = time.perf_counter() - started
            self._batch_seconds = seconds if not self._batch_seconds else 0.8 * self._batch_seconds + 0.2 * seconds
            if self.on_batch is not None:
                self.on_batch(len(batch), seconds)
            for job, result in zip(batch, results):
                if not job.future.done():
                    job.future.set_result(result)
