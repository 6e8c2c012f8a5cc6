"""``bench/gpu_check.sh`` (issue #30) stays runnable: without a GPU it says that it skipped
the GPU steps, rehearses each of them on the cupy stand-in at tiny sizes, and exits 0, so
the day a GPU is lent the one command cannot fail on a typo."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from test_cupy_branch import CUPY

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(CUPY is not None, reason="a GPU is here: the script would run the real "
                                             "8-minute check (run it by hand)")
def test_gpu_check_skips_the_gpu_steps_and_rehearses_them_without_a_gpu(tmp_path):
    r = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), str(tmp_path / "out")],
                       capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHON": sys.executable})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "skipped the GPU steps" in r.stdout
    summary = (tmp_path / "out" / "summary.txt").read_text()
    for step in ("a_pytest: rc=0", "b_throughput: rc=0", "c_batch: rc=0"):
        assert step in summary, summary
    table = (tmp_path / "out" / "b_throughput.md").read_text()
    assert "| cupy ref |" in table and "RMD LR 1000x784" in table
    assert "| gpu | mlp | strong |" in (tmp_path / "out" / "c_batch.md").read_text()
