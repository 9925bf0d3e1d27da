"""What a Fig. 3 run is given: its workload, its load and the predictor variants it compares."""

from __future__ import annotations

from dataclasses import dataclass

from mercato.experiments.iemas.common import FLEET, require_known
from mercato.experiments.iemas.predictors_variants import VARIANTS


@dataclass(frozen=True)
class PredictorsConfig:
    """Workload and load of the Fig. 3 runs, and which predictor variants to compare."""

    dialogues: int = 96
    concurrency: int = 96
    turns: int = 20
    fleet: tuple[str, ...] = FLEET
    variants: tuple[str, ...] = tuple(VARIANTS)
    tail: float = 0.2

    def __post_init__(self) -> None:
        require_known("predictor variants", self.variants, VARIANTS)
        if "mercato" not in self.variants:
            raise ValueError("the variants must include 'mercato' (the figure shows its predictions)")
        if min(self.dialogues, self.concurrency, self.turns) < 1:
            raise ValueError("dialogues, concurrency and turns must be >= 1")
        if not 0.0 < self.tail <= 1.0:
            raise ValueError(f"tail must be in (0, 1], got {self.tail}")
