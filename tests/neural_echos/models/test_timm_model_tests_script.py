"""scripts/timm_model_tests.sh (timm's own model tests on our models): its bad-input path.

The full run downloads timm's source package and takes minutes; it is run by hand (README)."""

import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "timm_model_tests.sh"


def test_no_timm_is_one_error_line(tmp_path):
    result = subprocess.run(
        ["bash", str(SCRIPT)],
        env={"PATH": "/usr/bin:/bin", "PYTHON": "/bin/false", "WORK": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: cannot import timm with /bin/false; run 'make install' or set PYTHON="
    ]
    assert not list(tmp_path.iterdir())  # nothing downloaded
