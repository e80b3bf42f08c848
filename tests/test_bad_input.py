"""Bad input of every kind: one line naming the file, a non-zero exit, no traceback, no partial
output, and the good files of a batch still done."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from realesr_portable.cli import app
from realesr_portable.image.io import ImageError, read_image, write_atomic
from realesr_portable.model.catalog import resolve_model

runner = CliRunner()
FAST = ["-n", "realesr-animevideov3-x2", "-g", "-1", "-q"]


def _good(tmp_path: Path, name: str = "good.png") -> Path:
    path = tmp_path / name
    Image.fromarray(np.full((8, 10, 3), 120, np.uint8)).save(path)
    return path


def _bad_files(tmp_path: Path) -> dict[str, Path]:
    good = _good(tmp_path, "source.png").read_bytes()
    jpeg_path = tmp_path / "source.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(jpeg_path)
    files = {
        "empty": tmp_path / "empty.png",
        "truncated_png": tmp_path / "truncated.png",
        "truncated_jpeg": tmp_path / "truncated.jpg",
        "text": tmp_path / "notes.png",
        "float_tiff": tmp_path / "float.tif",
    }
    files["empty"].write_bytes(b"")
    files["truncated_png"].write_bytes(good[: len(good) // 2])
    files["truncated_jpeg"].write_bytes(jpeg_path.read_bytes()[:300])
    files["text"].write_text("this is not an image\n")
    Image.fromarray(np.zeros((4, 4), np.float32)).save(files["float_tiff"])  # mode F: refused
    jpeg_path.unlink()
    (tmp_path / "source.png").unlink()
    return files


def _assert_one_line_errors(output: str) -> None:
    assert "Traceback" not in output
    for line in output.splitlines():
        assert len(line) < 400


@pytest.mark.parametrize("kind", ["empty", "truncated_png", "truncated_jpeg", "text", "float_tiff"])
def test_each_bad_file_gives_one_line_naming_it(tmp_path: Path, kind: str) -> None:
    bad = _bad_files(tmp_path)[kind]
    result = runner.invoke(app, ["-i", str(bad), "-o", str(tmp_path / "out.png"), *FAST])
    assert result.exit_code == 1
    _assert_one_line_errors(result.output)
    assert str(bad) in result.output
    assert not (tmp_path / "out.png").exists()


def test_decompression_bomb_refused_by_configurable_pixel_limit(tmp_path: Path) -> None:
    src = _good(tmp_path)  # 80 pixels
    result = runner.invoke(app, ["-i", str(src), "-o", str(tmp_path / "o.png"), "--max-pixels", "50", *FAST])
    assert result.exit_code == 1 and "exceeds the limit of 50" in result.output
    with pytest.raises(ImageError, match="exceeds"):
        read_image(src, max_pixels=79)
    assert read_image(src, max_pixels=80).size == (10, 8)


def test_batch_lists_bad_files_at_the_end_and_does_the_good_ones(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    bad = _bad_files(inputs)
    _good(inputs, "a.png")
    _good(inputs, "z.png")
    out = tmp_path / "out"
    result = runner.invoke(app, ["-i", str(inputs), "-i", str(tmp_path / "missing.png"), "-o", str(out), *FAST])
    assert result.exit_code == 1
    _assert_one_line_errors(result.output)
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "z.png"]
    tail = result.output[result.output.index("failed:"):]
    for path in [*(p for k, p in bad.items() if k != "float_tiff"), tmp_path / "missing.png"]:
        assert str(path) in tail
    assert "6 of 8 file(s) failed" in result.output  # 5 bad + 1 missing; tif is listed too


def test_an_empty_folder_fails_before_any_model_loads(tmp_path: Path) -> None:
    """Nothing to upscale is said, exit 1, and no output folder appears (it used to exit 0 in silence)."""
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "out"
    result = runner.invoke(app, ["-i", str(empty), "-o", str(out), "-n", "realesr-animevideov3-x2", "-g", "-1"])
    assert result.exit_code == 1 and not out.exists()
    assert f"{empty}: no images or videos in this folder" in result.output
    assert " on CPU " not in result.output  # the model line: nothing was loaded


def test_folder_entries_that_are_not_files_are_listed_not_skipped(tmp_path: Path) -> None:
    """A pipe named .mp4 (it would hang a reader) and a broken link named .png inside a folder are
    failures with their reason; the folder's good image is still done."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    os.mkfifo(inputs / "clip.mp4")
    (inputs / "gone.png").symlink_to(tmp_path / "nowhere.png")
    _good(inputs, "a.png")
    out = tmp_path / "out"
    result = runner.invoke(app, ["-i", str(inputs), "-o", str(out), *FAST])
    assert result.exit_code == 1
    _assert_one_line_errors(result.output)
    assert sorted(p.name for p in out.iterdir()) == ["a.png"]
    assert f"{inputs / 'clip.mp4'}: not a regular file" in result.output
    assert f"{inputs / 'gone.png'}: a broken link" in result.output
    assert "2 of 3 file(s) failed" in result.output


def test_an_unreadable_folder_fails_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder that cannot be listed (the kernel's refusal, simulated: root lists anything) is one
    failure with its reason; the other inputs are done (it used to end the whole batch, exit 2)."""
    real = Path.iterdir

    def iterdir(self: Path):
        if self.name == "locked":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    good = tmp_path / "good"
    good.mkdir()
    _good(good, "a.png")
    locked = tmp_path / "locked"
    locked.mkdir()
    _good(locked, "b.png")
    out = tmp_path / "out"
    monkeypatch.setattr(Path, "iterdir", iterdir)
    result = runner.invoke(app, ["-i", str(locked), "-i", str(good), "-o", str(out), *FAST])
    assert result.exit_code == 1, result.output
    assert sorted(p.name for p in out.iterdir()) == ["a.png"]
    assert f"{locked}: Permission denied" in result.output and "1 of 2 file(s) failed" in result.output


def test_an_output_that_is_a_pipe_or_device_is_never_replaced(tmp_path: Path) -> None:
    """The atomic rename would turn a named pipe (or /dev/full) given as -o into a plain file:
    one line naming it, exit 1, and the pipe is still a pipe."""
    import stat

    fifo = tmp_path / "out.png"
    os.mkfifo(fifo)
    result = runner.invoke(app, ["-i", str(_good(tmp_path)), "-o", str(fifo), *FAST])
    assert result.exit_code == 1 and "not a regular file" in result.output, result.output
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def _copy_model(tmp_path: Path) -> Path:
    files = resolve_model("realesr-animevideov3-x2")
    param = tmp_path / "m.param"
    shutil.copy(files.param, param)
    shutil.copy(files.bin, tmp_path / "m.bin")
    files.spec.__class__(**{**files.spec.__dict__, "name": "m"}).save(tmp_path / "m.json")
    return param


def test_a_missing_sidecar_is_read_from_the_graph(tmp_path: Path) -> None:
    """Issue 18: a model without its sidecar runs, its spec read from the graph."""
    param = _copy_model(tmp_path)
    param.with_suffix(".json").unlink()
    result = runner.invoke(app, ["-i", str(_good(tmp_path)), "-o", str(tmp_path / "o.png"), "-m", str(param), "-g", "-1", "-q"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "o.png").is_file()


@pytest.mark.parametrize("damage", ["missing_param", "missing_bin", "garbage_param", "short_bin", "long_bin", "bad_json"])
def test_bad_model_files_give_one_line(tmp_path: Path, damage: str) -> None:
    param = _copy_model(tmp_path)
    if damage == "missing_param":
        param.unlink()
        named = param
    else:
        named = {"missing_bin": param.with_suffix(".bin"), "missing_json": param.with_suffix(".json"),
                 "garbage_param": param, "short_bin": param.with_suffix(".bin"),
                 "long_bin": param.with_suffix(".bin"), "bad_json": param.with_suffix(".json")}[damage]
        if damage.startswith("missing"):
            named.unlink()
        elif damage == "garbage_param":
            param.write_text("7767517\nthis is not a graph\n")
        elif damage == "short_bin":
            named.write_bytes(named.read_bytes()[:5000])
        elif damage == "long_bin":
            named.write_bytes(named.read_bytes() + b"\0" * 64)
        else:
            named.write_text("{not json")
    src = _good(tmp_path)
    result = runner.invoke(app, ["-i", str(src), "-o", str(tmp_path / "o.png"), "-m", str(param), "-g", "-1", "-q"])
    assert result.exit_code == 2, result.output
    _assert_one_line_errors(result.output)
    assert len(result.output.strip().splitlines()) == 1
    assert str(named) in result.output
    assert not (tmp_path / "o.png").exists()


def test_unwritable_output_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file, not a folder")
    result = runner.invoke(app, ["-i", str(_good(tmp_path)), "-o", str(blocker / "sub" / "o.png"), *FAST])
    assert result.exit_code != 0
    _assert_one_line_errors(result.output)
    assert "o.png" in result.output or "sub" in result.output


def test_interrupted_write_leaves_no_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "out.png"

    def writer(fh) -> None:
        fh.write(b"half of an image")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, writer)
    assert os.listdir(tmp_path) == []


def test_failed_encode_leaves_no_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "out.png"
    target.write_bytes(b"previous complete output")

    def writer(fh) -> None:
        fh.write(b"partial")
        raise OSError(28, "No space left on device")

    with pytest.raises(ImageError, match="No space left"):
        write_atomic(target, writer)
    assert os.listdir(tmp_path) == ["out.png"] and target.read_bytes() == b"previous complete output"


@pytest.mark.parametrize("args,needle", [
    (["-g", "7"], "no Vulkan device 7"),
    (["-g", "x"], "-g 'x'"),
    (["-n", "no-such-model"], "no-such-model"),
    (["-j", "1:0"], "-j"),
    (["--alpha", "sharp"], "--alpha"),
    (["-f", "gif"], "-f"),
    (["--dn", "0.5"], "--dn"),
    (["--background", "notacolour"], "--background"),
])
def test_bad_options_give_one_line(tmp_path: Path, args: list[str], needle: str) -> None:
    result = runner.invoke(app, ["-i", str(_good(tmp_path)), "-o", str(tmp_path / "o.png"), "-n", "realesr-animevideov3-x2", *args])
    assert result.exit_code == 2, result.output
    _assert_one_line_errors(result.output)
    assert needle in result.output


def test_several_inputs_into_one_file_is_refused(tmp_path: Path) -> None:
    a, b = _good(tmp_path, "a.png"), _good(tmp_path, "b.png")
    result = runner.invoke(app, ["-i", str(a), "-i", str(b), "-o", str(tmp_path / "one.png"), *FAST])
    assert result.exit_code == 2 and "one output file" in result.output
