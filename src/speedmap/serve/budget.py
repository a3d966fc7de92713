"""Bytes in flight: request bodies and decoded images of all requests together stay under one limit.

Each request holds a :class:`Ticket`; what it takes is given back when the request ends, whatever the
outcome. A request that would pass the limit is refused at once (503 with Retry-After), never queued."""

from __future__ import annotations

import threading

from speedmap.serve.errors import Overloaded


class Budget:
    """A byte counter shared by one server process's requests (the event loop and the decode threads)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.used = limit, 0
        self.lock = threading.Lock()

    def ticket(self) -> Ticket:
        return Ticket(self)


class Ticket:
    """What one request holds of the budget."""

    def __init__(self, budget: Budget) -> None:
        self.budget, self.held = budget, 0

    def take(self, n: int) -> None:
        """Hold ``n`` more bytes, or raise :class:`Overloaded` if the server has no room for them."""
        if n <= 0:
            return
        with self.budget.lock:
            if self.budget.used + n > self.budget.limit:
                raise Overloaded("server busy: too many bytes in flight (see --max-inflight-mb), retry shortly")
            self.budget.used += n
            self.held += n

    def give(self, n: int) -> None:
        with self.budget.lock:
            n = min(max(0, n), self.held)
            self.budget.used -= n
            self.held -= n

    def release(self) -> None:
        self.give(self.held)
