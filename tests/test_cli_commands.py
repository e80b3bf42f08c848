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


# --- train, prepare and preview under the same table (they once printed a bare `error:`) -------

REPO = Path(__file__).resolve().parents[1]
PRESET = REPO / "trainer" / "presets" / "realesrnet_x4plus.yml"


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err.strip()


def test_train_errors_go_through_the_one_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """`realesr-portable train`: a bad config (what `check_config` finds included) is bad usage, 2; a
    failure during the work 1; Ctrl-C 130 with the resume note; under torchrun the rank in front."""
    from realesr_portable.trainer import loop
    from realesr_portable.trainer.stages import TrainingDiverged

    missing = tmp_path / "missing.yml"
    assert cli.main(["train", "--config", str(missing)]) == 2
    assert _one_line(capsys) == f"realesr-portable train: error: cannot read config {missing}: No such file or directory"
    assert cli.main(["train", "--config", str(PRESET), "--set", "network_g.num_blocks=2"]) == 2
    assert _one_line(capsys).startswith("realesr-portable train: error: unknown config key 'network_g.num_blocks' for RRDBNet")
    gone = tmp_path / "gone.pth"
    assert cli.main(["train", "--config", str(PRESET), "--export", "--resume", str(gone)]) == 1
    assert _one_line(capsys) == f"realesr-portable train: error: checkpoint {gone} does not exist"

    def diverge(cfg: object, resume: object = None) -> None:
        raise TrainingDiverged("non-finite loss at iteration 3: l_pix")

    def interrupt(cfg: object, resume: object = None) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "run", diverge)
    assert cli.main(["train", "--config", str(PRESET)]) == 1
    assert _one_line(capsys) == "realesr-portable train: error: non-finite loss at iteration 3: l_pix"
    monkeypatch.setattr(loop, "run", interrupt)
    monkeypatch.chdir(tmp_path)  # the preset's run folder is relative: experiments/NAME
    assert cli.main(["train", "--config", str(PRESET)]) == 130
    # the hint says what exists: it once promised a checkpoint before the first was written
    assert _one_line(capsys) == "realesr-portable train: error: interrupted; no checkpoint was written yet (checkpoint.save_every)"
    (tmp_path / "experiments" / "realesrnet_x4plus" / "checkpoints").mkdir(parents=True)
    (tmp_path / "experiments" / "realesrnet_x4plus" / "checkpoints" / "iter_00005000.pth").write_bytes(b"x")
    assert cli.main(["train", "--config", str(PRESET), "--resume", "auto"]) == 130
    assert _one_line(capsys) == "realesr-portable train: error: interrupted; resume with --resume auto (from iteration 5000)"

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert cli.main(["train", "--config", str(missing)]) == 2
    assert _one_line(capsys).startswith("[rank 1] realesr-portable train: error: cannot read config ")


def test_prepare_errors_go_through_the_one_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`realesr-portable prepare`: bad options or no input folder 2; no images or a file system
    error during the work 1."""
    from PIL import Image

    src, empty, blocker = tmp_path / "src", tmp_path / "empty", tmp_path / "a_file"
    src.mkdir()
    empty.mkdir()
    blocker.write_bytes(b"")
    Image.new("RGB", (40, 40), (9, 80, 200)).save(src / "a.png")
    cases = [
        ([tmp_path / "missing", tmp_path / "out"], 2, f"input folder {tmp_path / 'missing'} does not exist"),
        ([src, tmp_path / "out", "--scales", "1,half"], 2, "--scales must be numbers separated by commas, got '1,half'"),
        ([src, tmp_path / "out", "--scales", "1,2"], 2, "--scales: each factor must be between 0.01 and 1"),
        ([empty, tmp_path / "out"], 1, f"no images found under {empty}"),
        ([src, blocker / "out", "--workers", "1"], 1, f"{blocker / 'out'}: Not a directory"),  # OSError during the work
    ]
    for args, code, message in cases:
        assert cli.main(["prepare", *map(str, args)]) == code, args
        assert _one_line(capsys) == f"realesr-portable prepare: error: {message}"


def test_preview_errors_go_through_the_one_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`realesr-portable preview`: bad options, a missing image or a bad config 2; reading,
    degrading or writing failing (an OSError during the work: once exit 2) 1."""
    from PIL import Image

    photo, small, blocker = tmp_path / "a.png", tmp_path / "small.png", tmp_path / "a_file"
    Image.new("RGB", (40, 40), (9, 80, 200)).save(photo)
    Image.new("RGB", (20, 20)).save(small)
    blocker.write_bytes(b"")
    bad = tmp_path / "bad.yml"
    bad.write_text("first:\n  blur_porb: 1\n")
    out = tmp_path / "grid.png"
    small_args = ["--rows", "1", "--size", "32"]
    cases = [
        (["-o", out, tmp_path / "missing.png"], 2, f"no such image: {tmp_path / 'missing.png'}"),
        (["-o", out, "--size", "66", photo], 2, "need --rows 1..64 and --size 16..1024, a multiple of --scale"),
        (["-o", out, "--config", bad, *small_args, photo], 2, "first.blur_porb"),
        (["-o", out, *small_args, small], 1, f"{small} is 20x20, smaller than the crop size 32"),
        (["-o", blocker / "grid.png", *small_args, photo], 1, f"{blocker}: File exists"),  # OSError during the work
    ]
    for args, code, message in cases:
        assert cli.main(["preview", *map(str, args)]) == code, args
        line = _one_line(capsys)
        assert line.startswith("realesr-portable preview: error: ") and message in line, line
    assert not out.exists()


@pytest.mark.parametrize("script, args, line", [
    ("train.py", ["--config", "/nonexistent.yml"], "train.py: error: cannot read config /nonexistent.yml: No such file or directory"),
    ("prepare_subimages.py", ["/nonexistent", "/nonexistent-out"], "prepare_subimages.py: error: input folder /nonexistent does not exist"),
])
def test_trainer_scripts_report_through_the_same_table(script: str, args: list[str], line: str) -> None:
    """`python trainer/train.py` and `python trainer/prepare_subimages.py` (README) print the
    commands' own lines, under the script's name, with the same exit code."""
    proc = subprocess.run([sys.executable, str(REPO / "trainer" / script), *args],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [line], proc.stderr


def test_a_config_that_never_ends_or_is_huge_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--config /dev/zero` read until memory ran out (killed by the kernel); a config is a regular
    file of at most 1 MiB, and the trainer says so in one line (exit 2). preview refuses a grid of
    absurd size before any work."""
    from realesr_portable.cli import main

    big = tmp_path / "big.yml"
    big.write_bytes(b"#" * ((1 << 20) + 1))
    for config, needle in (("/dev/zero", "not a regular file"), (str(big), "larger than 1 MiB")):
        assert main(["train", "--config", config, "--dry-run"]) == 2
        err = capsys.readouterr().err.strip()
        assert needle in err and len(err.splitlines()) == 1, err
    assert main(["preview", "-o", str(tmp_path / "p.png"), "--rows", "99999999999999999999", "--size", "32"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--rows 1..64" in err and len(err.splitlines()) == 1 and not (tmp_path / "p.png").exists()
