"""Bad video input: one line, a non-zero exit, no output (final or temporary), the input untouched."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from realesr_portable.cli import app
from realesr_portable.video import VideoError, upscale_video
from video_support import frame_image, make_clip

runner = CliRunner()
FAST = ["-n", "realesr-animevideov3", "-s", "2", "-g", "-1", "--threads", "1", "-q"]


def _zero_frames(path: Path) -> None:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 32, 24, "yuv420p"
        out.start_encoding()


def _audio_only(path: Path) -> None:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=48000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 48000, 0
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)


def _make(kind: str, folder: Path) -> Path:
    path = folder / f"{kind}.{'mkv' if kind == 'cut_mkv' else 'mp4'}"
    if kind == "cut_mkv":  # Matroska still demuxes when cut: only its announced length tells
        make_clip(path, 24)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) * 6 // 10])
    elif kind == "text":
        path.write_text("this is not a video\n")
    elif kind == "truncated":
        make_clip(path, 12)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "zero_frames":
        _zero_frames(path)
    elif kind == "audio_only":
        _audio_only(path)
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _check_clean_failure(result, inputs: Path, out: Path, src: Path, digest: str, code: int = 1) -> None:
    assert result.exit_code == code, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("realesr-portable: error: "), result.output
    assert "Traceback" not in result.output
    assert not out.exists() or not any(out.iterdir())
    assert sorted(p.name for p in inputs.iterdir()) == [src.name]  # no temp files, no work folder
    assert _digest(src) == digest


@pytest.mark.parametrize("kind, message", [
    ("text", "not a readable video"),
    ("truncated", "not a readable video"),
    ("cut_mkv", "truncated (the file has"),
    ("zero_frames", "no video stream"),
    ("audio_only", "no video stream (only audio)"),
])
def test_unreadable_videos(tmp_path: Path, kind: str, message: str) -> None:
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    src = _make(kind, inputs)
    digest = _digest(src)
    result = runner.invoke(app, ["-i", str(src), "-o", str(out / "result.mp4"), *FAST])
    _check_clean_failure(result, inputs, out, src, digest)
    assert message in result.output and src.name in result.output


@pytest.mark.parametrize("options, message", [
    (["--codec", "nosuchcodec"], "no such encoder"),
    (["--codec", "aac"], "not a video one"),
    (["--codec", "libx264", "--pix-fmt", "rgb24"], "--pix-fmt 'rgb24'"),
    (["--codec", "libx264", "--preset", "warp9"], "rejects --pix-fmt yuv420p, --preset warp9"),
])
def test_bad_encoder_settings(tmp_path: Path, options: list[str], message: str) -> None:
    """Bad usage (exit 2), refused before any work: with an image in the same batch, that image
    was once written first and the video failed after it (exit 1)."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    src = inputs / "clip.mp4"
    make_clip(src, 4)
    digest = _digest(src)
    result = runner.invoke(app, ["-i", str(src), "-o", str(tmp_path / "out" / "x.mkv"), *FAST, *options])
    _check_clean_failure(result, inputs, tmp_path / "out", src, digest, code=2)
    assert message in result.output
    still = tmp_path / "still.png"
    Image.fromarray(frame_image(0)).save(still)
    result = runner.invoke(app, ["-i", str(src), "-i", str(still), "-o", str(tmp_path / "out"), *FAST, *options])
    _check_clean_failure(result, inputs, tmp_path / "out", src, digest, code=2)
    assert message in result.output


def test_unwritable_output(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    src = inputs / "clip.mp4"
    make_clip(src, 4)
    digest = _digest(src)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    result = runner.invoke(app, ["-i", str(src), "-o", str(blocker / "x.mp4"), *FAST])
    _check_clean_failure(result, inputs, tmp_path / "out", src, digest)
    assert "cannot create the output folder" in result.output
    assert blocker.read_text() == "not a folder"


def test_unknown_output_container(tmp_path: Path) -> None:
    src = tmp_path / "clip.mp4"
    make_clip(src, 4)
    with pytest.raises(VideoError, match="unsupported video container"):
        upscale_video(src, tmp_path / "x.flv", object())


def test_missing_pyav_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "clip.mp4"
    make_clip(src, 4)
    monkeypatch.setitem(sys.modules, "av", None)  # `import av` now raises ImportError
    result = runner.invoke(app, ["-i", str(src), "-o", str(tmp_path / "out.mp4"), *FAST])
    assert result.exit_code == 1
    assert result.output.strip() == "realesr-portable: error: video needs PyAV: pip install 'realesr-portable[video]'"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]
