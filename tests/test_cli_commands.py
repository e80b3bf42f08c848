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


def test_one_table_turns_errors_into_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    """`exit_code` is every command's table: the same error is 2 while a command sets up (bad usage,
    nothing started) and 1 during the work; an error may insist on its own code; one line each."""
    from realesr_portable.cli.commands import exit_code
    from realesr_portable.cli.signals import Terminated
    from realesr_portable.errors import UserError
    from realesr_portable.run.backend import BackendError

    cases = [
        (UserError("bad model"), {"setup": True}, 2, "p: error: bad model"),
        (UserError("bad image"), {}, 1, "p: error: bad image"),
        (ValueError("--png-level 12"), {"setup": True}, 2, "p: error: --png-level 12"),
        (ValueError("a bug"), {}, 1, "p: internal error: ValueError: a bug"),
        (BackendError("no torch"), {"setup": True}, 1, "p: error: no torch"),
        (FileNotFoundError(2, "No such file or directory", "x.png"), {"setup": True}, 2, "p: error: x.png: No such file or directory"),
        (KeyboardInterrupt(), {"after": "rerun with --resume"}, 130, "p: error: interrupted; rerun with --resume"),
        (Terminated(), {}, 143, "p: error: terminated"),
    ]
    for err, how, code, line in cases:
        assert exit_code(err, "p", **how) == code, err
        assert capsys.readouterr().err.splitlines() == [line]


def test_the_upscale_command_runs_under_the_same_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Setup errors of the upscale command (option values checked by UpscaleOptions) exit 2 in one line."""
    src = tmp_path / "a.png"
    src.write_bytes(b"")
    assert cli.main(["-i", str(src), "-o", str(tmp_path / "o"), "--dn", "0.5", "-g", "-1"]) == 2
    assert cli.main(["-i", str(src), "-o", str(tmp_path / "o"), "--alpha", "none", "-g", "-1"]) == 2
    assert cli.main(["-i", str(src), "--no-such-flag"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == ["realesr-portable: error: --dn and --dn-model go together",
                   "realesr-portable: error: --alpha 'none': expected one of bicubic, model",
                   "realesr-portable: No such option: --no-such-flag"], err
