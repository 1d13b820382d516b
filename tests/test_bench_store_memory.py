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


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/PID/status")
def test_rss_watch_reports_peaks_of_another_process_until_it_exits() -> None:
    import subprocess

    child = subprocess.Popen([sys.executable, "-c",
                              "import time; b = bytearray(64 << 20); time.sleep(1.0)"])
    watcher = subprocess.run([sys.executable, "-m", "bench.rss_watch", str(child.pid),
                              "--every", "0.05"], capture_output=True, text=True, check=True,
                             stdin=subprocess.DEVNULL, timeout=60)
    child.wait()
    peaks = json.loads(watcher.stdout)
    assert peaks["peak_RssAnon_mb"] >= 64
    assert peaks["peak_sampled_total_mb"] >= peaks["peak_RssAnon_mb"]
