"""What a Fig. 6 run is given: the market's size, the K sweep, and when the paper's design is timed."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClusteringConfig:
    """Market size, the K sweep and when the paper's design is measured rather than extrapolated."""

    agents: int = 100
    tasks: int = 200
    ks: tuple[int, ...] = tuple(range(1, 21))
    max_free_slots: int = 3  # an agent offers 1..max_free_slots slots
    repeats: int = 3  # timing repetitions of the fast methods (median)
    paper_measure_tasks: int = 60  # measure the pure-Python design when no hub has more tasks
    paper_fractions: tuple[float, ...] = (0.3, 0.4, 0.5)  # sub-market sizes its extrapolation fits
    paper_check: bool = True  # also measure it on the first seed's largest extrapolated hub set (slow)

    def __post_init__(self) -> None:
        if self.agents < 1 or self.tasks < 1 or self.repeats < 1:
            raise ValueError("agents, tasks and repeats must be >= 1")
        if not self.ks or min(self.ks) < 1 or max(self.ks) > self.agents:
            raise ValueError(f"every K must be between 1 and the number of agents ({self.agents})")
        if self.max_free_slots < 1 or self.paper_measure_tasks < 1:
            raise ValueError("max_free_slots and paper_measure_tasks must be >= 1")
        if len(self.paper_fractions) < 2 or not all(0.0 < f < 1.0 for f in self.paper_fractions):
            raise ValueError("paper_fractions needs at least two fractions in (0, 1)")
