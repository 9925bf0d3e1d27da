"""The workload side of the simulator's calibration: 8 synthetic CoQA dialogues with gold histories.

:mod:`mercato.engine.calibration` measures and compares; it takes the workload as plain data, so
that the engine layer does not import the workloads. This module builds that workload and runs the
comparison with a progress bar, for the calibration section of ``mercato bench engine``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mercato.engine.calibration import (
    REPLAY_DIALOGUES,
    REPLAY_TURNS,
    RESULTS,
    Conversation,
    calibrate_against_real,
    calibration_steps,
)
from mercato.reporting import progress
from mercato.workloads.dialogue import gold_history_turns
from mercato.workloads.evaluate import is_correct
from mercato.workloads.synthetic import synthetic_dialogues


def calibration_workload(seed: int = 0) -> list[Conversation]:
    """The replayed workload: per dialogue, every turn's messages (gold histories) and gold answer."""
    return [gold_history_turns(d) for d in synthetic_dialogues("coqa", REPLAY_DIALOGUES, seed, REPLAY_TURNS)]


def calibration_section(seed: int = 0, out_dir: Path | None = RESULTS) -> dict[str, Any]:
    """Run :func:`~mercato.engine.calibration.calibrate_against_real` on the workload, with progress."""
    conversations = calibration_workload(seed)
    with progress() as bar:
        task = bar.add_task("calibrate vs llama.cpp", total=calibration_steps(conversations))
        return calibrate_against_real(conversations, seed=seed, judge=is_correct, out_dir=out_dir,
                                      on_step=lambda: bar.advance(task))
