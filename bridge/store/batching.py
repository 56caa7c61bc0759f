"""Group commit: concurrent `enqueue` calls share one transaction, so one fsync.

A durable commit on SQLite costs an fsync (milliseconds). The webhook must not answer 202
before its trigger is committed (docs/design.md, Webhook and admin API), yet must take 1,000 events
a second (Performance). So the first caller becomes the leader and commits its request together
with every request that arrived while the previous leader was committing; each caller still returns
only after the transaction holding its request committed. A lone caller commits alone, without
waiting.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

Request = TypeVar("Request")
Result = TypeVar("Result")


class _Entry(Generic[Request, Result]):
    def __init__(self, request: Request) -> None:
        self.request = request
        self.done = False
        self.result: Result | None = None
        self.error: BaseException | None = None


class GroupCommitter(Generic[Request, Result]):
    """Runs `commit(batch)` for batches of requests gathered from concurrent callers.

    `commit` must return one result per request, in order, or raise; an exception reaches
    every caller of that batch (the transaction stored none of them).
    """

    def __init__(self, commit: Callable[[Sequence[Request]], list[Result]]) -> None:
        self._commit = commit
        self._changed = threading.Condition()
        self._waiting: list[_Entry[Request, Result]] = []
        self._committing = False

    def submit(self, request: Request) -> Result:
        entry: _Entry[Request, Result] = _Entry(request)
        with self._changed:
            self._waiting.append(entry)
            while self._committing and not entry.done:
                self._changed.wait()
            if not entry.done:
                self._committing = True
                batch, self._waiting = self._waiting, []
        if not entry.done:
            self._run(batch)
        if entry.error is not None:
            raise entry.error
        return entry.result  # type: ignore[return-value]

    def _run(self, batch: list[_Entry[Request, Result]]) -> None:
        try:
            results = self._commit([entry.request for entry in batch])
        except BaseException as exc:
            for entry in batch:
                entry.error = exc
        else:
            for entry, result in zip(batch, results, strict=True):
                entry.result = result
        finally:
            with self._changed:
                for entry in batch:
                    entry.done = True
                self._committing = False
                self._changed.notify_all()
