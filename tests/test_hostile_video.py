"""Hostile video input, round 2 (issue 17): each case is one line, a non-zero exit, no output, the
input untouched, or (AVI, x264 B-frames) a correct result. Tiny clips, mostly a nearest-neighbour
stand-in for the model where the model does not matter."""

from __future__ import annotations

import hashlib
import os
import resource
import shutil
import signal
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from typer.testing import CliRunner

from hostile_support import in_child
from realesr_portable.api import Upscaler
from realesr_portable.cli import app
from realesr_portable.model.catalog import resolve_model
from realesr_portable.video import VideoError, upscale_video
from realesr_portable.video.probe import probe
from video_support import FailAfter, decode_rgb, frame_image, frame_times, make_clip

runner = CliRunner()
MODEL = ["-n", "realesr-animevideov3", "-s", "2", "-g", "-1", "--threads", "1", "-q"]
LOSSLESS = [*MODEL, "--codec", "ffv1", "--pix-fmt", "bgr0"]


class Nearest:
    """Pixel repetition: enough where only timing, order and errors are under test."""

    def __init__(self, factor: int = 2) -> None:
        self.factor = factor

    def upscale(self, image: np.ndarray) -> np.ndarray:
        return image.repeat(self.factor, 0).repeat(self.factor, 1)

    def settings(self) -> dict:
        return {"upscaler": f"nearest x{self.factor}"}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _one_error_line(result) -> str:
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("realesr-portable: error: "), result.output
    return lines[0]


def _closest_inputs(frames: list[np.ndarray], count: int) -> list[int]:
    """For each (x2) output frame, the index of the synthetic input frame it shows."""
    return [int(np.argmin([np.abs(f[::2, ::2].astype(int) - frame_image(i).astype(int)).mean() for i in range(count)]))
            for f in frames]


# Item 3: two videos with one name into one folder.
def test_two_videos_with_one_name_are_refused(tmp_path: Path) -> None:
    for folder in ("d1", "d2"):
        (tmp_path / folder).mkdir()
        make_clip(tmp_path / folder / "clip.mp4", 4)
    out = tmp_path / "out"
    result = runner.invoke(app, ["-i", str(tmp_path / "d1" / "clip.mp4"), "-i", str(tmp_path / "d2" / "clip.mp4"),
                                 "-o", str(out), *MODEL])
    assert result.exit_code == 2
    assert "several inputs would write this output" in _one_error_line(result)
    assert not out.exists() or not any(out.iterdir())


# Item 9: -o equal to the input, a hard link or a symlink to it.
@pytest.mark.parametrize("how", ["same path", "hard link", "symlink"])
def test_output_that_is_the_input_exits_2(tmp_path: Path, how: str) -> None:
    src = tmp_path / "clip.mp4"
    make_clip(src, 4)
    digest = _digest(src)
    dst = {"same path": src, "hard link": tmp_path / "link.mp4", "symlink": tmp_path / "sym.mp4"}[how]
    if how == "hard link":
        os.link(src, dst)
    elif how == "symlink":
        dst.symlink_to(src)
    result = runner.invoke(app, ["-i", str(src), "-o", str(dst), *MODEL])
    assert result.exit_code == 2
    assert "would overwrite the input" in _one_error_line(result)
    assert _digest(src) == digest and os.path.samefile(src, dst)
    with pytest.raises(VideoError, match="would overwrite the input"):
        upscale_video(src, dst, Nearest())
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({src.name, dst.name})


# Item 8: a FIFO (or any non-regular file) as -i.
@pytest.mark.parametrize("name", ["pipe.mp4", "pipe.bin"])
def test_fifo_input_fails_at_once(tmp_path: Path, name: str) -> None:
    fifo = tmp_path / name
    os.mkfifo(fifo)

    def run() -> tuple[int, str]:
        result = runner.invoke(app, ["-i", str(fifo), "-o", str(tmp_path / "out"), *MODEL])
        return result.exit_code, result.output

    status, value = in_child(run, timeout=60)
    assert status == "ok", value
    code, output = value
    assert code == 1 and "Traceback" not in output and "pipe." in output, output
    if name.endswith(".mp4"):
        assert "not a regular file (a FIFO)" in output
    with pytest.raises(VideoError, match="not a regular file"):
        probe(fifo)
    out = tmp_path / "out"  # refused before the output folder is made, or left empty
    assert not out.exists() or not any(out.iterdir())


# Item 4: every setting that changes pixels is in the resume manifest.
def _model_copy(folder: Path, stem: str) -> Path:
    files = resolve_model("realesr-animevideov3-x2")
    folder.mkdir(exist_ok=True)
    for source, suffix in ((files.param, ".param"), (files.bin, ".bin")):
        shutil.copy(source, folder / f"{stem}{suffix}")
    files.spec.save(folder / f"{stem}.json")
    return folder / f"{stem}.param"


@pytest.mark.parametrize("change", ["--dn", "--fp32", "--tta", "model files", "--pix-fmt"])
def test_resume_with_a_changed_pixel_setting_is_refused(tmp_path: Path, change: str) -> None:
    src, dst = tmp_path / "in.mkv", tmp_path / "out.mkv"
    make_clip(src, 12, codec="ffv1", pix_fmt="bgr0", gop=4)
    model = _model_copy(tmp_path / "models", "m")
    twin = _model_copy(tmp_path / "models", "twin")
    first = {"dn": 0.5, "dn_model": twin} if change == "--dn" else {}
    inner = Upscaler(model, gpu=-1, outscale=2.0, threads=1, **first)
    work = tmp_path / ".out.mkv.resume"
    with pytest.raises(RuntimeError, match="simulated crash"):
        upscale_video(src, dst, FailAfter(inner, 6, wait_for=work / "segment_00000.mkv"), codec="ffv1",
                      pix_fmt="bgr0", chunk_seconds=0.1)
    kept = sorted(work.glob("segment_*"))
    assert kept
    before = {p.name: p.read_bytes() for p in kept}
    args = ["-i", str(src), "-o", str(dst), "-m", str(model), "-s", "2", "-g", "-1", "--threads", "1", "-q",
            "--codec", "ffv1", "--pix-fmt", "bgr0", "--resume"]
    expected = {"--dn": "--dn 0.5 -> 0.8", "--fp32": "--fp32 False -> True", "--tta": "--tta False -> True",
                "model files": "model files differ", "--pix-fmt": "--pix-fmt bgr0 -> yuv444p"}[change]
    if change == "--dn":
        args += ["--dn", "0.8", "--dn-model", str(twin)]
    elif change == "--fp32":
        args.append("--fp32")
    elif change == "--tta":
        args.append("-x")
    elif change == "model files":
        data = bytearray(model.with_suffix(".bin").read_bytes())
        data[len(data) // 2] ^= 0x01  # one weight's lowest bit
        model.with_suffix(".bin").write_bytes(bytes(data))
    else:
        args += ["--pix-fmt", "yuv444p"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    line = _one_error_line(result)
    assert "made with other settings" in line and expected in line, line
    assert not dst.exists() and {p.name: p.read_bytes() for p in sorted(work.glob("segment_*"))} == before


# Item 5: a Matroska file cut anywhere is refused; complete files pass.
@pytest.mark.parametrize("kind", ["x264", "x264+opus", "ffv1"])
def test_cut_matroska_is_refused_wherever_it_is_cut(tmp_path: Path, kind: str) -> None:
    src = tmp_path / "clip.mkv"
    make_clip(src, 16, codec="ffv1" if kind == "ffv1" else "libx264", pix_fmt="bgr0" if kind == "ffv1" else "yuv420p",
              audio="libopus" if "opus" in kind else None)
    assert probe(src).frames == 16 and probe(src).notes == ()
    data = src.read_bytes()
    cut = tmp_path / "cut.mkv"
    for percent in range(85, 100, 2):
        cut.write_bytes(data[: len(data) * percent // 100])
        with pytest.raises(VideoError, match="truncated"):
            probe(cut)


def test_matroska_without_a_length_is_noted(tmp_path: Path) -> None:
    """Written to a pipe (no seeking), Matroska carries no length: say the cut check was not possible."""

    class Pipe:
        def __init__(self) -> None:
            self.data = bytearray()

        def write(self, chunk: bytes) -> int:
            self.data += chunk
            return len(chunk)

    pipe = Pipe()
    with av.open(pipe, "w", format="matroska") as out:
        stream = out.add_stream("ffv1", rate=25)
        stream.width, stream.height, stream.pix_fmt = 32, 24, "bgr0"
        for i in range(6):
            frame = av.VideoFrame.from_ndarray(frame_image(i), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    src = tmp_path / "live.mkv"
    src.write_bytes(bytes(pipe.data))
    report = upscale_video(src, tmp_path / "out.mkv", Nearest(), codec="ffv1", pix_fmt="bgr0")
    assert report.frames == 6
    assert any("announces no length" in note for note in report.notices), report.notices


# Item 6: AVI holds frame slots at one rate: CFR keeps frame 0 at 0, VFR is refused.
def _avi_slots(path: Path) -> tuple[list[Fraction], Fraction]:
    """What an AVI stores: each video frame's slot (dts) in seconds, and the stream's rate."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return [p.dts * s.time_base for p in c.demux(s) if p.size], Fraction(s.average_rate)


def test_cfr_into_avi_keeps_every_frame_time(tmp_path: Path) -> None:
    src, dst = tmp_path / "clip.mp4", tmp_path / "clip.avi"
    make_clip(src, 8)
    upscale_video(src, dst, Nearest())
    slots, rate = _avi_slots(dst)
    assert slots == frame_times(src) and slots[0] == 0 and rate == 25
    info = probe(dst)
    assert [(p - info.frame_pts[0]) * info.time_base for p in info.frame_pts] == frame_times(src)
    back = tmp_path / "back.mkv"  # read back through the decode-order path
    upscale_video(dst, back, Nearest(), codec="ffv1", pix_fmt="bgr0")
    assert frame_times(back) == frame_times(src)
    assert _closest_inputs([f[::2, ::2] for f in decode_rgb(back)], 8) == list(range(8))


def test_frames_on_the_rate_grid_keep_their_slots_in_avi(tmp_path: Path) -> None:
    """Dropped frames (40/80/120 ms at 25 fps) are empty AVI slots: every time is kept."""
    src, dst = tmp_path / "gaps.mkv", tmp_path / "gaps.avi"
    make_clip(src, 8, durations_ms=[40, 80, 40, 120, 40, 40, 40, 40])
    upscale_video(src, dst, Nearest())
    assert _avi_slots(dst) == (frame_times(src), 25)


def test_vfr_into_avi_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "vfr.mkv"
    make_clip(src, 8, durations_ms=[40, 25, 55, 40, 30, 50, 40, 40])
    digest = _digest(src)
    result = runner.invoke(app, ["-i", str(src), "-o", str(tmp_path / "out.avi"), *MODEL])
    assert result.exit_code == 1
    assert "variable frame rate does not fit AVI" in _one_error_line(result)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vfr.mkv"] and _digest(src) == digest


# Item 10: x264 with B-frames in AVI (no presentation times in the file).
def _x264_avi_with_b_frames(path: Path, frames: int = 12) -> None:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25, options={"bf": "2", "g": "4", "keyint_min": "4"})
        stream.width, stream.height, stream.pix_fmt = 32, 24, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(frame_image(i), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def test_x264_avi_with_b_frames_is_upscaled_in_order(tmp_path: Path) -> None:
    src = tmp_path / "b.avi"
    _x264_avi_with_b_frames(src)
    with av.open(str(src)) as c:  # the hostile part: FFmpeg's frame pts run in decode order
        guessed = [f.pts for f in c.decode(video=0)]
    assert guessed != sorted(guessed)
    dst = tmp_path / "b.mkv"
    result = runner.invoke(app, ["-i", str(src), "-o", str(dst), *MODEL])
    assert result.exit_code == 0, result.output
    assert frame_times(dst) == [Fraction(i, 25) for i in range(12)]
    assert _closest_inputs(decode_rgb(dst), 12) == list(range(12))


def test_x264_avi_with_b_frames_resumes_like_an_uninterrupted_run(tmp_path: Path) -> None:
    src = tmp_path / "b.avi"
    _x264_avi_with_b_frames(src)
    reference, dst = tmp_path / "reference.mkv", tmp_path / "out.mkv"
    upscale_video(src, reference, Nearest(), codec="ffv1", pix_fmt="bgr0", chunk_seconds=0.1)
    first = tmp_path / ".out.mkv.resume" / "segment_00000.mkv"
    with pytest.raises(RuntimeError, match="simulated crash"):
        upscale_video(src, dst, FailAfter(Nearest(), 6, wait_for=first), codec="ffv1", pix_fmt="bgr0",
                      chunk_seconds=0.1)
    kept = len(list(first.parent.glob("segment_*")))
    report = upscale_video(src, dst, Nearest(), codec="ffv1", pix_fmt="bgr0", chunk_seconds=0.1, resume=True)
    assert kept >= 1 and report.chunks_reused == kept
    assert frame_times(dst) == frame_times(reference)
    assert all(np.array_equal(a, b) for a, b in zip(decode_rgb(dst), decode_rgb(reference), strict=True))


# Item 7: disk full while encoding a segment or joining: one line, no PyAV traceback.
@pytest.mark.parametrize("where, limit", [("segment", 10_000), ("join", 100_000)])
def test_full_disk_is_one_line(tmp_path: Path, capfd, where: str, limit: int) -> None:
    """A real failing write(2): the file size limit (RLIMIT_FSIZE, in a forked child) stops a file
    at `limit` bytes with a partial write and then EFBIG, as a full disk does with ENOSPC (checked by
    hand on a 200 KB tmpfs: "cannot write (No space left on device)"). Segments are ~31 KB, the join
    ~190 KB. Before the fix the join said "Error in PyAV callback" after PyAV printed "PyAV library
    exception being dropped:" and a traceback."""
    src, dst = tmp_path / "in.mkv", tmp_path / "out.mkv"
    make_clip(src, 24, codec="ffv1", pix_fmt="bgr0", gop=4, size=(64, 48))

    def run() -> str:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
        try:
            upscale_video(src, dst, Nearest(4), codec="ffv1", pix_fmt="bgr0", chunk_seconds=0.1)
        except VideoError as exc:
            return str(exc)
        return "no error"

    status, message = in_child(run, timeout=120)
    captured = capfd.readouterr()
    assert status == "ok", message
    assert message.endswith("cannot write (File too large)") and "\n" not in message, message
    assert ("segment_00000" in message) == (where == "segment")
    assert "PyAV" not in captured.err + captured.out and "Traceback" not in captured.err
    assert not dst.exists() and not list(tmp_path.rglob("*.part"))
    if where == "join":  # the finished segments stay for --resume once there is space again
        kept = len(list((tmp_path / ".out.mkv.resume").glob("segment_*")))
        assert kept >= 4
        report = upscale_video(src, dst, Nearest(4), codec="ffv1", pix_fmt="bgr0", chunk_seconds=0.1, resume=True)
        assert report.chunks_reused == kept and report.frames == 24
    else:
        assert not (tmp_path / ".out.mkv.resume").exists()  # nothing finished: nothing to resume


# Smaller: encoder settings refused before any work; --max-pixels applies to video.
@pytest.mark.parametrize("options, message", [
    (["--codec", "mjpeg"], "--codec mjpeg rejects --pix-fmt yuv420p (Invalid argument); try --pix-fmt yuvj420p"),
    (["--crf", "1000"], "--crf 1000: libx264 takes 0 to 51"),
    (["--codec", "ffv1", "--crf", "20"], "--crf: ffv1 has no constant-quality (crf) setting"),
    (["--codec", "libvpx-vp9", "--preset", "slow"], "--preset: libvpx-vp9 has no presets"),
    (["--codec", "libx265", "--preset", "warp9"], "--codec libx265 rejects --pix-fmt yuv420p, --preset warp9"),
    (["--max-pixels", "500"], "768 pixels per frame exceeds the limit of 500"),
])
def test_bad_settings_refused_up_front(tmp_path: Path, capfd, options: list[str], message: str) -> None:
    src = tmp_path / "clip.mp4"
    make_clip(src, 4)
    result = runner.invoke(app, ["-i", str(src), "-o", str(tmp_path / "out.mkv"), *MODEL, *options])
    # encoder settings are bad usage (exit 2, before any work); a frame too large is the input's fault
    assert result.exit_code == (1 if "--max-pixels" in options else 2)
    assert message in _one_error_line(result)
    assert "[error]" not in capfd.readouterr().err  # x264/x265 print their own complaint otherwise
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


def test_mjpeg_with_the_suggested_pixel_format_works(tmp_path: Path) -> None:
    src, dst = tmp_path / "clip.mp4", tmp_path / "out.mkv"
    make_clip(src, 4)
    report = upscale_video(src, dst, Nearest(), codec="mjpeg", pix_fmt="yuvj420p")
    assert report.frames == 4 and frame_times(dst) == frame_times(src)


def test_max_pixels_is_checked_on_every_frame(tmp_path: Path) -> None:
    src = tmp_path / "clip.mkv"
    make_clip(src, 4)
    with pytest.raises(VideoError, match="exceeds the limit of 700"):
        upscale_video(src, tmp_path / "out.mkv", Nearest(), max_pixels=700)
    assert upscale_video(src, tmp_path / "ok.mkv", Nearest(), max_pixels=768).frames == 4


def test_svt_av1_prints_nothing(tmp_path: Path, capfd) -> None:
    """SVT-AV1's banner went to stdout from the up-front encoder check, before SVT_LOG was set."""
    src = tmp_path / "clip.mp4"
    make_clip(src, 4)
    result = runner.invoke(app, ["-i", str(src), "-o", str(tmp_path / "out.mkv"), *MODEL, "--codec", "libsvtav1",
                                 "--preset", "12", "--crf", "40"])
    assert result.exit_code == 0, result.output
    captured = capfd.readouterr()
    assert "Svt[" not in captured.out + captured.err and result.output == ""
    assert frame_times(tmp_path / "out.mkv") == frame_times(src)
