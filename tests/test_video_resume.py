"""A killed video job resumes from its finished chunks and ends equal to an uninterrupted run;
a work folder from another input or other settings is refused, never mixed in."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from realesr_portable.api import Upscaler
from realesr_portable.cli import app
from realesr_portable.video import upscale_video
from video_support import FailAfter, decode_rgb, frame_times, make_clip

runner = CliRunner()
LOSSLESS = ["-n", "realesr-animevideov3", "-s", "2", "-g", "-1", "--threads", "1", "--codec", "ffv1", "--pix-fmt", "bgr0"]

# The killed run: the same model and settings as LOSSLESS, one frame every 0.25 s so the test can
# kill it between chunks, and short chunks (one per keyframe, every 4 frames).
SLOW_JOB = """
import sys, time
from realesr_portable.api import Upscaler
from realesr_portable.video import upscale_video

class Slow:
    def __init__(self, inner):
        self.inner, self.spec, self.options = inner, inner.spec, inner.options
        self.settings = inner.settings
    def upscale(self, image):
        time.sleep(0.25)
        return self.inner.upscale(image)

up = Slow(Upscaler("realesr-animevideov3", gpu=-1, outscale=2.0, threads=1))
upscale_video(sys.argv[1], sys.argv[2], up, codec="ffv1", pix_fmt="bgr0", chunk_seconds=0.1)
"""


@pytest.fixture(scope="module")
def upscaler() -> Upscaler:
    return Upscaler("realesr-animevideov3", gpu=-1, outscale=2.0, threads=1)


def test_sigkill_then_resume_equals_uninterrupted_run(tmp_path: Path, upscaler: Upscaler) -> None:
    src, dst = tmp_path / "in.mkv", tmp_path / "out.mkv"
    make_clip(src, 16, codec="ffv1", pix_fmt="bgr0", gop=4, audio="libopus")
    script = tmp_path / "job.py"
    script.write_text(SLOW_JOB)
    work = tmp_path / ".out.mkv.resume"
    proc = subprocess.Popen([sys.executable, str(script), str(src), str(dst)], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (work / "segment_00000.mkv").exists():
            assert proc.poll() is None, "the job ended before its first segment was seen"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert not dst.exists()
    finished = sorted(p.name for p in work.glob("segment_*.mkv"))
    assert finished and len(finished) < 4
    result = runner.invoke(app, ["-i", str(src), "-o", str(dst), *LOSSLESS, "--resume"])
    assert result.exit_code == 0, result.output
    assert f"{len(finished)} segment(s) resumed" in result.output
    assert not work.exists()
    reference = tmp_path / "reference.mkv"
    upscale_video(src, reference, upscaler, codec="ffv1", pix_fmt="bgr0", chunk_seconds=0.1)
    assert frame_times(dst) == frame_times(reference) == frame_times(src)
    got, want = decode_rgb(dst), decode_rgb(reference)
    assert len(got) == len(want) == 16
    assert all(np.array_equal(a, b) for a, b in zip(got, want))


def test_work_folder_from_another_job_is_refused(tmp_path: Path, upscaler: Upscaler) -> None:
    src, dst = tmp_path / "in.mkv", tmp_path / "out.mkv"
    make_clip(src, 12, codec="ffv1", pix_fmt="bgr0", gop=4)
    work = tmp_path / ".out.mkv.resume"
    kept = work / "segment_00000.mkv"
    with pytest.raises(RuntimeError, match="simulated crash"):
        upscale_video(src, dst, FailAfter(upscaler, 6, wait_for=kept), codec="ffv1", pix_fmt="bgr0", chunk_seconds=0.1)
    assert kept.is_file() and not dst.exists()
    before = kept.read_bytes()

    no_resume = runner.invoke(app, ["-i", str(src), "-o", str(dst), *LOSSLESS, "-q"])
    assert no_resume.exit_code == 1 and "add --resume" in no_resume.output
    other_settings = runner.invoke(app, ["-i", str(src), "-o", str(dst), *LOSSLESS, "-q", "--resume", "--skip-duplicates"])
    assert other_settings.exit_code == 1 and "other settings (--skip-duplicates False -> True; duplicate threshold None -> 2)" in other_settings.output
    make_clip(src, 12, codec="ffv1", pix_fmt="bgr0", gop=4, size=(34, 24))
    other_input = runner.invoke(app, ["-i", str(src), "-o", str(dst), *LOSSLESS, "-q", "--resume"])
    assert other_input.exit_code == 1 and "different input" in other_input.output
    for result in (no_resume, other_settings, other_input):
        assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert not dst.exists() and kept.read_bytes() == before  # nothing lost, nothing half-written
    assert sorted(os.listdir(tmp_path)) == [".out.mkv.resume", "in.mkv"]


def test_chunks_start_at_keyframes_and_cover_every_frame() -> None:
    from fractions import Fraction

    from realesr_portable.video.probe import VideoInfo
    from realesr_portable.video.chunks import plan_chunks, chunk_of

    pts = tuple(range(0, 640, 40))  # 16 frames, 40 ms, a keyframe every 4
    info = VideoInfo(32, 24, Fraction(1, 1000), Fraction(25), pts, pts[::4], 0)
    short = plan_chunks(info, 0.1)
    assert [(s.start_pts, s.end_pts, s.frames) for s in short] == [(0, 160, 4), (160, 320, 4), (320, 480, 4), (480, None, 4)]
    longer = plan_chunks(info, 0.3)
    assert [(s.start_pts, s.end_pts, s.frames) for s in longer] == [(0, 320, 8), (320, None, 8)]
    assert [chunk_of(longer, p).index for p in pts] == [0] * 8 + [1] * 8
    assert sum(s.frames for s in plan_chunks(info, 10.0)) == 16
