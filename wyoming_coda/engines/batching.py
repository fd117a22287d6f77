"""Slot scheduler: concurrent streams stepped together in one batched model call per frame.

The model keeps one streaming state of `capacity` rows (moshi's batched streaming). A stream
takes a free row (waiting while all are taken) and gives it back when done; its row is reset
on its first step, so joining and leaving never disturbs the other rows. Each step executes
only the rows whose stream has work (moshi's exec mask); when no stream has work the worker
sleeps, so an idle engine costs nothing. Model calls run on one dedicated thread, in order.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, Protocol, TypeVar

from ..audio import FRAME_RATE, FRAME_SIZE, SAMPLE_RATE

_LOGGER = logging.getLogger(__name__)

In = TypeVar("In")
Out = TypeVar("Out")
In_co = TypeVar("In_co", covariant=True)
Out_contra = TypeVar("Out_contra", contravariant=True)
S = TypeVar("S")  # a stream an engine opens


class SlotStream(Protocol[In_co, Out_contra]):
    """What the scheduler needs from a stream."""

    def has_work(self) -> bool:
        """True when the stream can take part in the next step."""

    def take(self) -> In_co:
        """The stream's input for the next step (called in the event loop)."""

    def deliver(self, output: Out_contra) -> None:
        """The step's output for this stream (called in the event loop)."""

    def fail(self, message: str) -> None:
        """The step failed for this stream."""


StepFn = Callable[[Sequence[In | None], Sequence[bool]], Sequence[Out | None]]
StepObserver = Callable[[str, float, int], None]  # (engine, seconds, rows stepped)


class BatchScheduler(Generic[In, Out]):
    """Runs `step(inputs, resets)` for all streams with work; inputs[i] is None for rows that
    do not execute this step, resets[i] is True on a row's first step for a new stream."""

    def __init__(
        self, name: str, capacity: int, step: StepFn[In, Out], executor: ThreadPoolExecutor,
        on_step: StepObserver | None = None,
    ) -> None:
        self.name = name
        self._on_step = on_step
        self.capacity = capacity
        self._step = step
        self._executor = executor
        self._slots: list[SlotStream[In, Out] | None] = [None] * capacity
        self._fresh = [False] * capacity
        self._work = asyncio.Event()
        self._free = asyncio.Condition()
        self._worker: asyncio.Task[None] | None = None
        self.steps = 0
        self.rows_stepped = 0
        self.waiting = 0  # streams waiting for a free row

    @property
    def active(self) -> int:
        return sum(slot is not None for slot in self._slots)

    async def acquire(self, stream: SlotStream[In, Out]) -> int:
        """Give `stream` a row, waiting for one to be free."""
        async with self._free:
            self.waiting += 1
            try:
                await self._free.wait_for(lambda: None in self._slots)
            finally:
                self.waiting -= 1
            row = self._slots.index(None)
            self._slots[row] = stream
            self._fresh[row] = True
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._run(), name=f"{self.name} batch worker")
        return row

    async def release(self, row: int) -> None:
        """Free `row` for the next stream."""
        async with self._free:
            self._slots[row] = None
            self._fresh[row] = False
            self._free.notify()

    def wake(self) -> None:
        """A stream has new work."""
        self._work.set()

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._work.wait()
            self._work.clear()
            while True:
                rows = [s if s is not None and s.has_work() else None for s in self._slots]
                if not any(rows):
                    break
                inputs = [s.take() if s is not None else None for s in rows]
                resets = [self._fresh[i] and rows[i] is not None for i in range(self.capacity)]
                for i, reset in enumerate(resets):
                    if reset:
                        self._fresh[i] = False
                started = time.perf_counter()
                try:
                    outputs = await loop.run_in_executor(self._executor, self._step, inputs, resets)
                except Exception:  # fail the streams of this step, keep serving
                    _LOGGER.exception("%s step failed", self.name)
                    for stream in rows:
                        if stream is not None:
                            stream.fail(f"{self.name} model step failed")
                    continue
                self.steps += 1
                if self._on_step is not None:
                    self._on_step(self.name, time.perf_counter() - started, sum(r is not None for r in rows))
                for i, stream in enumerate(rows):
                    if stream is not None:
                        self.rows_stepped += 1
                        output = outputs[i]
                        if self._slots[i] is stream and output is not None:
                            stream.deliver(output)


class EngineBusyError(Exception):
    """Every row of an engine stayed taken for as long as a request may wait."""


async def take_row(opening: Awaitable[S], seconds: float, what: str) -> S:
    """The stream `opening` gives (it takes a row), or EngineBusyError after `seconds`."""
    try:
        return await asyncio.wait_for(opening, seconds)
    except TimeoutError:
        raise EngineBusyError(f"every {what} row stayed in use for {seconds:g} s: try again in a moment") from None


class Rows:
    """The rows of an engine that runs each stream on its own (no batched step): a stream
    takes a row, waiting while all are taken, and gives it back when done."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._free = asyncio.Semaphore(capacity)
        self.active = 0
        self.waiting = 0  # streams waiting for a row

    async def acquire(self) -> None:
        self.waiting += 1
        try:
            await self._free.acquire()
        finally:
            self.waiting -= 1
        self.active += 1

    def release(self) -> None:
        self.active -= 1
        self._free.release()


class RowEngine:
    """What the CPU profile's engines share: a model, `capacity` rows that each run one stream on
    a thread of the engine's executor, and Mimi's frame geometry at 24 kHz."""

    sample_rate = SAMPLE_RATE
    frame_size = FRAME_SIZE  # 80 ms
    frame_rate = FRAME_RATE
    languages: list[str] | None = None  # the loaded model's, when it tells

    def __init__(
        self, model: Any, capacity: int, executor: ThreadPoolExecutor, on_step: StepObserver | None = None,
    ) -> None:
        self.model = model
        self.capacity = capacity
        self.rows = Rows(capacity)
        self.scheduler = self.rows  # occupancy, as the batched engines report it
        self.executor = executor
        self._on_step = on_step

    async def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


Item = TypeVar("Item")


class BatchedStream(ABC, Generic[Item]):
    """What every engine stream shares: its row and the queue its results are read from; a
    subclass says when it has work, what its next step takes and what a step's output means."""

    def __init__(self, scheduler: BatchScheduler[Any, Any]) -> None:
        self.scheduler = scheduler
        self.row: int | None = None
        self._results: asyncio.Queue[Item | BaseException | None] = asyncio.Queue()

    @abstractmethod
    def has_work(self) -> bool:
        """True when the stream can take part in the next step."""

    @abstractmethod
    def take(self) -> Any:
        """The stream's input for the next step (called in the event loop)."""

    @abstractmethod
    def deliver(self, output: Any) -> None:
        """The step's output for this stream (called in the event loop)."""

    def _emit(self, item: Item) -> None:
        self._results.put_nowait(item)

    def _end(self) -> None:
        self._results.put_nowait(None)

    def fail(self, message: str) -> None:
        """The model step of this stream failed: readers get the error."""
        self._results.put_nowait(RuntimeError(message))

    async def _items(self) -> AsyncIterator[Item]:
        while True:
            item = await self._results.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    async def close(self) -> None:
        """Give the row back (also when the client left or the request was cancelled)."""
        if self.row is not None:
            row, self.row = self.row, None
            await self.scheduler.release(row)


class BatchedEngine:
    """What every engine shares: the codec's frame geometry, its thread and its scheduler."""

    languages: list[str] | None = None  # Kyutai checkpoints: known from the repo, not the weights

    def __init__(
        self, name: str, mimi: Any, capacity: int, step: StepFn[Any, Any], executor: ThreadPoolExecutor,
        on_step: StepObserver | None = None,
    ) -> None:
        self.capacity = capacity
        self.sample_rate = int(mimi.sample_rate)
        self.frame_size = int(mimi.frame_size)
        self.frame_rate = float(mimi.frame_rate)
        self._executor = executor
        self.scheduler: BatchScheduler[Any, Any] = BatchScheduler(name, capacity, step, executor, on_step)

    async def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run `fn` on the engine's model thread."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def close(self) -> None:
        await self.scheduler.close()
        self._executor.shutdown(wait=False, cancel_futures=True)
