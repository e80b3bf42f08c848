"""One command line: `realesr-portable train|prepare|preview|convert|models` beside upscaling,
each with a `--help` that lists its options and defaults, and a fast top-level `--help`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from realesr_portable import cli
from realesr_portable.image import io as imageio


def test_top_level_help_imports_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "from realesr_portable.cli import main\n"
        "assert main(['--help']) == 0\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('numpy', 'PIL', 'ncnn', 'torch', 'rich')]\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for name in cli.SUBCOMMANDS:
        assert name in proc.stdout  # the other commands are named in the epilog
    assert "100000000" in proc.stdout  # defaults are listed


def test_cli_default_matches_the_reader() -> None:
    assert cli.DEFAULT_MAX_PIXELS == imageio.DEFAULT_MAX_PIXELS


@pytest.mark.parametrize("command, needles", [
    ("train", ["--config", "--set", "--resume", "--dry-run"]),
    ("prepare", ["--crop-size PIXELS", "[default: 480", "--step", "[default: 240"]),
    ("preview", ["--rows", "[default: 6", "--size PIXELS", "[default: 256"]),
    ("convert", ["--route", "--tile-pad", "--fp32"]),
    ("models", ["--help"]),
])
def test_every_command_has_help(command: str, needles: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([command, "--help"]) == 0
    out = capsys.readouterr().out
    for needle in needles:
        assert needle in out, (command, needle)


def test_commands_report_bad_input_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["prepare", str(tmp_path / "missing"), str(tmp_path / "out")]) == 2
    assert cli.main(["train", "--config", str(tmp_path / "missing.yml")]) == 2
    assert cli.main(["preview", "--rows", "2"]) == 2  # -o is required
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 3 and "Traceback" not in "".join(err)
    assert "missing" in err[0] and "missing.yml" in err[1] and "--output" in err[2]
