"""Batch behaviour: inputs as files/globs/folders, output naming, --skip-existing, threads."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from realesr_portable.batch.jobs import UsageError, expand_inputs, plan_jobs
from realesr_portable.batch.pipeline import parse_threads
from realesr_portable.cli import app

runner = CliRunner()
FAST = ["-n", "realesr-animevideov3-x2", "-g", "-1", "-q"]


def _images(folder: Path, names: list[str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, name in enumerate(names):
        path = folder / name
        Image.fromarray(np.full((6, 8, 3), 40 * i, np.uint8)).save(path)
        paths.append(path)
    return paths


def test_folder_glob_and_positional_inputs(tmp_path: Path) -> None:
    _images(tmp_path / "a", ["1.png", "2.jpg"])
    _images(tmp_path / "b", ["3.png", "4.png"])
    (tmp_path / "a" / "readme.txt").write_text("not an image, not picked from a folder")
    out = tmp_path / "out"
    result = runner.invoke(app, ["-i", str(tmp_path / "a"), "-i", str(tmp_path / "b" / "*.png"), "-o", str(out), *FAST,
                                 "-j", "2:2:2", "--suffix", "_up"])
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(out)) == ["1_up.png", "2_up.jpg", "3_up.png", "4_up.png"]
    with Image.open(out / "2_up.jpg") as im:
        assert im.format == "JPEG" and im.size == (16, 12)


def test_default_output_is_beside_the_input_with_a_scale_suffix(tmp_path: Path) -> None:
    (src,) = _images(tmp_path, ["cat.png"])
    result = runner.invoke(app, [str(src), *FAST])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "cat_x2.png").is_file()


def test_skip_existing(tmp_path: Path) -> None:
    a, b = _images(tmp_path / "in", ["a.png", "b.png"])
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.png").write_bytes(b"keep me")
    result = runner.invoke(app, ["-i", str(a), "-i", str(b), "-o", str(out), "--skip-existing",
                                 "-n", "realesr-animevideov3-x2", "-g", "-1"])
    assert result.exit_code == 0, result.output
    assert (out / "a.png").read_bytes() == b"keep me" and (out / "b.png").is_file()
    assert "skipped 1" in result.output


def test_expand_inputs_reports_missing_and_deduplicates(tmp_path: Path) -> None:
    (a,) = _images(tmp_path, ["a.png"])
    files, missing = expand_inputs([str(a), str(tmp_path), str(tmp_path / "nope.png"), str(tmp_path / "*.webp")])
    assert files == [a]
    assert [m[0].name for m in missing] == ["nope.png", "*.webp"]


def test_plan_refuses_overwriting_inputs_and_collisions(tmp_path: Path) -> None:
    a = tmp_path / "x" / "a.png"
    b = tmp_path / "y" / "a.png"
    with pytest.raises(UsageError, match="several inputs"):
        plan_jobs([a, b], tmp_path / "out", None, None, "_x4")
    with pytest.raises(UsageError, match="overwrite the input"):
        plan_jobs([a], None, None, "", "_x4")
    jobs = plan_jobs([a], tmp_path / "one.webp", None, None, "_x4")
    assert jobs[0].dst.name == "one.webp" and jobs[0].fmt == "WEBP"


@pytest.mark.parametrize("text,ok", [("1:1:2", True), ("2:3:1", True), ("1:1", False), ("0:1:1", False), ("a:b:c", False)])
def test_parse_threads(text: str, ok: bool) -> None:
    if ok:
        assert parse_threads(text) == tuple(int(p) for p in text.split(":"))
    else:
        with pytest.raises(UsageError):
            parse_threads(text)


def test_progress_line_shows_files_and_tiles() -> None:
    import io

    from realesr_portable.cli.progress import ProgressLine

    import re

    stream = io.StringIO()
    line = ProgressLine(3, stream=stream, enabled=True)
    line.tile(2, 9)
    line.file_done()
    line.close()
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", stream.getvalue())  # colours and cursor moves
    assert re.search(r"files .* 0/3 .*\ntiles .* 2/9 ", text) and re.search(r"files .* 1/3 ", text)
    assert "it/s" in text and "eta" in text and text.endswith("\n")
    quiet = io.StringIO()
    ProgressLine(3, stream=quiet, enabled=False).tile(1, 2)
    assert quiet.getvalue() == ""
