"""bench.store_memory on a tiny store: it runs and reports both phases' peaks."""

from __future__ import annotations

import json
import sys

import pytest

from bench.store_memory import main


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_reports_anonymous_and_file_peaks_per_phase(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--points", "600", "--dim", "8", "--batch", "256"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["points"] == 600 and result["dim"] == 8
    for phase in ("upserts", "finish"):
        assert result[f"{phase}_peak_RssAnon_mb"] > 0
        assert result[f"{phase}_peak_RssFile_mb"] >= 0
        assert result[f"{phase}_peak_total_mb"] >= result[f"{phase}_peak_RssAnon_mb"]
