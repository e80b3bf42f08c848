"""Signals mid-batch and what killed runs leave behind (issue 8, item 11).

SIGTERM (`timeout`, `docker stop`, `kill`) and Ctrl-C end a batch with one line, exit 143/130,
and no `.NAME.PID.XXXXXXXX.part` file; SIGKILL cannot be handled, so a later run removes the
leftovers of dead writers (only names the atomic writer makes).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from realesr_portable.atomic import STALE_AFTER_S, is_stale_part, remove_stale, write_bytes_atomic
from realesr_portable.cli import app

runner = CliRunner()
FAST = ["-n", "realesr-animevideov3-x2", "-g", "-1", "-q"]
CLI = [sys.executable, "-c", "import sys; from realesr_portable.cli import main; sys.exit(main())"]


def _inputs(folder: Path, count: int, size: int = 96) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        pixels = np.random.default_rng(i).integers(0, 255, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:02d}.png")


def _interrupt_after(tmp_path: Path, sig: int, done_before: int, times: int = 1) -> tuple[int, str, Path]:
    src, out = tmp_path / "in", tmp_path / "out"
    if not src.exists():
        _inputs(src, 30)
    proc = subprocess.Popen([*CLI, "-i", str(src), "-o", str(out), *FAST, "-j", "1:1:4"],
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if out.is_dir() and sum(1 for p in out.iterdir() if p.suffix == ".png") >= done_before:
            break
        time.sleep(0.02)
    for _ in range(times):
        proc.send_signal(sig)
        time.sleep(0.05)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err, out


def _assert_no_part_files(out: Path) -> None:
    assert [p.name for p in out.iterdir() if p.name.endswith(".part")] == []


@pytest.mark.parametrize("done_before", [1, 3])
def test_sigterm_mid_batch_exits_143_with_one_line_and_no_part_files(tmp_path: Path, done_before: int) -> None:
    code, err, out = _interrupt_after(tmp_path, signal.SIGTERM, done_before)
    assert code == 143, err
    assert err.strip().splitlines() == ["realesr-portable: error: terminated; finished files are complete, "
                                        "no partial output was left"]
    _assert_no_part_files(out)
    for written in out.iterdir():  # every file that exists is whole
        with Image.open(written) as im:
            im.load()
            assert im.size == (192, 192)


def test_second_sigterm_does_not_cut_the_cleanup_short(tmp_path: Path) -> None:
    code, err, out = _interrupt_after(tmp_path, signal.SIGTERM, 2, times=3)
    assert code == 143 and len(err.strip().splitlines()) == 1, err
    _assert_no_part_files(out)


def test_ctrl_c_mid_batch_exits_130_with_no_part_files(tmp_path: Path) -> None:
    code, err, out = _interrupt_after(tmp_path, signal.SIGINT, 2)
    assert code == 130, err
    assert "interrupted" in err and "Traceback" not in err
    _assert_no_part_files(out)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _part(folder: Path, name: str, age_s: float) -> Path:
    path = folder / name
    path.write_bytes(b"half an image")
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


def test_stale_part_files_of_dead_writers_are_removed_others_kept(tmp_path: Path) -> None:
    dead, live = _dead_pid(), os.getpid()
    old = STALE_AFTER_S + 30
    stale = [_part(tmp_path, f".a.png.{dead}.ab_cd123.part", old),
             _part(tmp_path, f".b.png.{live}.zz000000.part", 2 * 24 * 3600)]  # a day old: abandoned
    kept = [_part(tmp_path, f".c.png.{dead}.ab_cd123.part", 1),  # dead writer but fresh: maybe another namespace
            _part(tmp_path, f".d.png.{live}.ab_cd123.part", old),  # a live writer
            _part(tmp_path, f"e.png.{dead}.ab_cd123.part", old),  # not hidden: not ours
            _part(tmp_path, f".f.png.{dead}.ABCDEFGH.part", old),  # not mkstemp's alphabet
            _part(tmp_path, ".g.png.part", old),
            _part(tmp_path, f".h.png.{dead}.ab_cd123.part.bak", old)]
    (tmp_path / f".i.png.{dead}.ab_cd123.part").mkdir()  # a folder of that name is left alone
    assert sorted(remove_stale(tmp_path)) == sorted(stale)
    assert all(p.exists() for p in kept) and not any(p.exists() for p in stale)
    assert (tmp_path / f".i.png.{dead}.ab_cd123.part").is_dir()


def test_symlink_with_a_stale_name_is_not_followed_or_removed(tmp_path: Path) -> None:
    target = tmp_path / "precious.png"
    target.write_bytes(b"keep me")
    link = tmp_path / f".x.png.{_dead_pid()}.ab_cd123.part"
    link.symlink_to(target)
    assert not is_stale_part(link)
    assert remove_stale(tmp_path) == [] and target.read_bytes() == b"keep me"


def test_rerun_after_sigkill_removes_the_leftovers_and_says_so(tmp_path: Path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    _inputs(src, 2, size=8)
    out.mkdir()
    leftover = _part(out, f".00.png.{_dead_pid()}.k1ll3d00.part", STALE_AFTER_S + 30)
    result = runner.invoke(app, ["-i", str(src), "-o", str(out), *FAST[:-1], "--skip-existing"])
    assert result.exit_code == 0, result.output
    assert not leftover.exists()
    assert "removed 1 temporary file(s) left by a killed run" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["00.png", "01.png"]


def test_atomic_writer_names_carry_its_pid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    real_replace = os.replace

    def spy(src: str, dst: str) -> None:
        seen.append(Path(src).name)
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    write_bytes_atomic(tmp_path / "x.png", b"data")
    assert len(seen) == 1 and seen[0].startswith(f".x.png.{os.getpid()}.") and seen[0].endswith(".part")
    assert not is_stale_part(tmp_path / seen[0])  # our own name pattern, but gone after the rename
