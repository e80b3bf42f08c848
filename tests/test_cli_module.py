"""`python -m realesr_portable` is the `realesr-portable` command: same usage text, same exit codes
(0 help, 2 bad usage, 1 failure), same one-line errors, so scripts can use either."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def _run(argv: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=tmp_path)


@pytest.mark.parametrize("args, code", [
    (["--help"], 0),
    (["-i", "does-not-exist.png", "-o", "out.png", "--no-such-flag"], 2),
    (["-i", "does-not-exist.png", "-o", "out.png"], 1),
])
def test_module_matches_the_command(tmp_path: Path, args: list[str], code: int) -> None:
    module = _run([sys.executable, "-m", "realesr_portable", *args], tmp_path)
    assert module.returncode == code, module.stderr
    assert "Traceback" not in module.stderr
    if code == 1:
        assert "does-not-exist.png" in module.stderr
    if code == 2:
        assert "--no-such-flag" in module.stderr
    script = shutil.which("realesr-portable", path=str(Path(sys.executable).parent))
    if script is None:  # the console script is optional in an editable env; the module is the contract
        return
    command = _run([script, *args], tmp_path)
    assert command.returncode == module.returncode
    assert command.stdout == module.stdout
    assert command.stderr == module.stderr
