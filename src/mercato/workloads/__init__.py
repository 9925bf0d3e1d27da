"""Workloads: CoQA, QuAC and HotpotQA dialogues (loaded or synthetic), the load generator, evaluators."""

from mercato.workloads.dialogue import Dialogue, Turn, dialogue_messages
from mercato.workloads.synthetic import synthetic_dialogues

__all__ = ["Dialogue", "Turn", "dialogue_messages", "synthetic_dialogues"]
