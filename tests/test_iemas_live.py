"""The live check on a real llama.cpp server (skipped, saying why, where it is not built)."""

from __future__ import annotations

import pytest

from mercato.experiments.iemas import live
from mercato.experiments.iemas.common import Options

SKIP_REASON = live.unavailable_reason()
pytestmark = [pytest.mark.real_engine, pytest.mark.skipif(SKIP_REASON is not None, reason=str(SKIP_REASON))]


def test_live_check_runs_on_a_real_server_and_its_simulated_twin(tmp_path):
    config = live.LiveConfig(dialogues=2, turns=2, servers=1, slots=1, max_tokens=4,
                             policies=("round_robin",))
    section = live.run(Options(seeds=1, workers=1, out=tmp_path, show_progress=False), config)
    rows = {r["engine"]: r for r in section.data["summary"]}
    assert set(rows) == {"real", "simulated"}
    assert rows["real"]["errors"] == 0 and 0.0 <= rows["real"]["kv_hit_rate"] <= 1.0
    assert rows["real"]["ttft_p50_ms"] > 0 and rows["real"]["mean_cost"] > 0
    assert (tmp_path / "live.md").is_file() and (tmp_path / "live.png").is_file()
    assert "real engine" in section.markdown
