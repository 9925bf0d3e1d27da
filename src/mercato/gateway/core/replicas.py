"""What gateway replicas in front of one fleet tell each other, free of any transport.

Each replica routes with its own Router core. Two things decide routing that a replica cannot
see by itself: the requests the *other* replicas have in flight at each backend (and the prefill
they queued there), and which dialogue prefixes the other replicas left warm on which backend.
:class:`ReplicaView` is the narrow window a transport (:mod:`mercato.gateway.live.replica_sync`)
uses for both: it reads this replica's own load, hands in the others' sums, and feeds prefix
entries both ways, whether the routing core is one Router or one per hub.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from mercato.gateway.core.load import BackendLoad
from mercato.gateway.core.prefix import PrefixLedger


@dataclass(frozen=True)
class RouterPart:
    """One Router's backends (in its own order), its load and its prefix ledger."""

    backends: Sequence[str]
    load: BackendLoad
    ledger: PrefixLedger


@dataclass(frozen=True)
class BackendShare:
    """One backend's load as one replica reports it."""

    inflight: float
    wait_s: float  # seconds of prefill this replica has queued there


class ReplicaView:
    """Load and prefix state of one replica's routing core, by backend name."""

    def __init__(self, parts: Sequence[RouterPart]) -> None:
        self.parts = list(parts)
        self._owner = {name: part for part in self.parts for name in part.backends}

    def own_load(self, now: float) -> dict[str, BackendShare]:
        """This replica's own in-flight requests and queued prefill per backend."""
        shares: dict[str, BackendShare] = {}
        for part in self.parts:
            wait = part.load.own_wait(now)
            for j, name in enumerate(part.backends):
                shares[name] = BackendShare(float(part.load.inflight[j]), float(wait[j]))
        return shares

    def share(self, others: Mapping[str, BackendShare], now: float) -> None:
        """The other replicas' summed load; a backend they did not report counts as idle."""
        for part in self.parts:
            none = BackendShare(0.0, 0.0)
            got = [others.get(name, none) for name in part.backends]
            part.load.share(np.array([s.inflight for s in got]), np.array([s.wait_s for s in got]), now)

    def others_inflight(self) -> float:
        """Requests the other replicas have in flight, over all backends."""
        return float(sum(part.load.others_inflight.sum() for part in self.parts))

    def remember(self, backend: str, session: str, text: str) -> None:
        """A prefix entry another replica observed; unknown backends (other configs) are ignored."""
        part = self._owner.get(backend)
        if part is not None:
            part.ledger.remember(backend, session, text)

    def listen(self, listener: Callable[[str, str, str], None]) -> None:
        """Call ``listener(backend, session, text)`` for each entry this replica observes."""
        for part in self.parts:
            part.ledger.listen(listener)


def summed(reports: Sequence[Mapping[str, BackendShare]]) -> dict[str, BackendShare]:
    """Several replicas' reports added up per backend."""
    total: dict[str, BackendShare] = {}
    for report in reports:
        for name, s in report.items():
            t = total.get(name, BackendShare(0.0, 0.0))
            total[name] = BackendShare(t.inflight + s.inflight, t.wait_s + s.wait_s)
    return total
