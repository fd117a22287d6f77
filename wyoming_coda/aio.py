"""Asyncio helpers shared by the orchestration layer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

_END = object()


async def task_stream(
    produce: Callable[[asyncio.Queue[Any]], Awaitable[None]], name: str
) -> AsyncGenerator[Any, None]:
    """Run `produce(queue)` as a task and yield what it puts on the queue until it returns.

    An exception put on the queue is raised at once; one raised by the producer is raised after
    its last item. Closing the iterator cancels the producer."""
    queue: asyncio.Queue[Any] = asyncio.Queue()

    async def run() -> None:
        try:
            await produce(queue)
        finally:
            queue.put_nowait(_END)

    task = asyncio.create_task(run(), name=name)
    try:
        while (item := await queue.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item
        await task
    finally:
        if not task.done():
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)


class IdleBound:
    """A bound on inactivity: `touch()` at each sign of life; `expired()` returns once nothing
    happened for `seconds`."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._at = time.monotonic()

    def touch(self) -> None:
        self._at = time.monotonic()

    async def expired(self) -> None:
        # each touch moves the deadline: there is no event to wait on
        while (left := self._at + self.seconds - time.monotonic()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(left)
