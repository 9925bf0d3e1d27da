"""The one path of a routed request: dispatched to its ranked backends, then settled once.

Both faces of the gateway walk it the same way. The live app forwards over HTTP and the virtual
clock submits to simulated engines, but each calls :meth:`Dispatch.attempt` when it hands the
request to a backend, :meth:`Dispatch.abandon` when that backend gives it up (failover), and
exactly one of :meth:`Dispatch.succeed` / :meth:`Dispatch.fail` at the end. The router's
in-flight counts, predictors, prefix ledger and accounting all follow from these calls.
"""

from __future__ import annotations

from collections.abc import Callable

from mercato.gateway.core.types import Decision, LedgerRecord, Observation, RouteRequest, RoutingCore


def failed_observation(request: RouteRequest, backend: str, error: str) -> Observation:
    """What the router learns from a request that was not served."""
    return Observation(request_id=request.request_id, backend=backend, ok=False, ttft_s=None,
                       latency_s=None, prompt_tokens=request.prompt_tokens, cached_tokens=0,
                       completion_tokens=0, text="", error=error)


class Dispatch:
    """A decided request on its way through its ranked backends; ``clock()`` gives ``now``."""

    def __init__(self, router: RoutingCore, decision: Decision, clock: Callable[[], float],
                 on_settled: Callable[[], None] | None = None) -> None:
        """``on_settled`` runs once the request is settled (the live app's admission count)."""
        self.router = router
        self.decision = decision
        self.clock = clock
        self.on_settled = on_settled
        self.attempts: list[str] = []
        self.settled = False

    @property
    def request(self) -> RouteRequest:
        """The request being dispatched."""
        return self.decision.request

    @property
    def ranking(self) -> list[str]:
        """Backends in the order to try them: the primary, then the failover order."""
        return self.decision.backends

    @property
    def failovers(self) -> int:
        """How many times the request moved on to another backend."""
        return max(0, len(self.attempts) - 1)

    def attempt(self, backend: str) -> None:
        """The request is being sent to ``backend``: it is in flight there."""
        self.attempts.append(backend)
        self.router.started(self.decision, backend, self.clock())

    def abandon(self, backend: str) -> None:
        """``backend`` gave the request up: it no longer counts as in flight there."""
        self.router.release(self.decision, backend, self.clock())

    def succeed(self, observation: Observation) -> LedgerRecord | None:
        """The request was served: the router learns from it and returns its ledger record."""
        return self._settle(observation)

    def fail(self, error: str, backend: str | None = None) -> None:
        """The request could not be served (or its client left); the router forgets it."""
        where = backend or (self.attempts[-1] if self.attempts else "")
        self._settle(failed_observation(self.request, where, error))

    def _settle(self, observation: Observation) -> LedgerRecord | None:
        if self.settled:
            raise RuntimeError(f"request {self.request.request_id} was settled twice")
        self.settled = True
        try:
            return self.router.finish(self.decision, observation, self.clock())
        finally:
            if self.on_settled is not None:
                self.on_settled()
