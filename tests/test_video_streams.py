"""Video through the CLI and `upscale_video`: frame count, exact timestamps (CFR and VFR), audio and
subtitle packets copied byte for byte, rotation, tags, chapters, lossless parity with image upscaling."""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from typer.testing import CliRunner

from realesr_portable.api import Upscaler
from realesr_portable.cli import app
from realesr_portable.video import is_video, upscale_video
from realesr_portable.cli.video import FrameProgress
from video_support import decode_rgb, frame_image, frame_times, make_clip, packets

runner = CliRunner()
FAST = ["-n", "realesr-animevideov3", "-s", "2", "-g", "-1", "--threads", "1", "-q"]  # 1 thread: no spin-waits on a busy CI


@pytest.fixture(scope="module")
def upscaler() -> Upscaler:
    return Upscaler("realesr-animevideov3", gpu=-1, outscale=2, threads=1)


def _duration(path: Path) -> Fraction:
    """End of the last video frame (pts + duration), in seconds."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        last = max((p for p in c.demux(s) if p.size), key=lambda p: p.pts)
        return (last.pts + last.duration) * s.time_base


def test_cfr_mp4_keeps_timing_audio_rotation_and_tags(tmp_path: Path) -> None:
    src, dst = tmp_path / "clip.mp4", tmp_path / "clip_x2.mp4"
    make_clip(src, 12, audio="aac", rotation=90, chapters=True)
    result = runner.invoke(app, ["-i", str(src), "-o", str(dst), *FAST])
    assert result.exit_code == 0, result.output
    assert frame_times(dst) == frame_times(src) and len(frame_times(dst)) == 12
    assert packets(dst, "audio") == packets(src, "audio") and len(packets(src, "audio")) > 10
    assert abs(_duration(dst) - _duration(src)) <= Fraction(1, 25)
    with av.open(str(dst)) as c:
        video = c.streams.video[0]
        assert (video.codec_context.width, video.codec_context.height) == (64, 48)
        assert video.codec_context.name == "h264"
        assert next(c.decode(video)).rotation == 90
        assert video.metadata.get("language") == "jpn"
        assert c.streams.audio[0].metadata.get("language") == "eng"
        assert c.metadata.get("title") == "test clip"
        assert [ch["metadata"].get("title") for ch in c.chapters()] == ["Part 1"]
    assert not list(tmp_path.glob(".*")), "work folder and temp files are gone after success"


def test_vfr_mkv_with_opus_and_subtitles(tmp_path: Path) -> None:
    src, dst = tmp_path / "vfr.mkv", tmp_path / "out.mkv"
    durations = [40, 80, 20, 120, 40, 60] * 3
    pts = make_clip(src, 18, durations_ms=durations, audio="libopus", subtitles=True)
    result = runner.invoke(app, ["-i", str(src), "-o", str(dst), *FAST, "--codec", "libx265", "--crf", "30"])
    assert result.exit_code == 0, result.output
    assert frame_times(dst) == [Fraction(p, 1000) for p in pts]
    assert packets(dst, "audio") == packets(src, "audio")
    subs = packets(dst, "subtitles")
    assert subs == packets(src, "subtitles") and [text for _, text in subs][:2] == [b"line 0", b"line 1"]
    with av.open(str(dst)) as c:
        assert c.streams.subtitles[0].metadata.get("language") == "fra"
        assert c.streams.video[0].codec_context.name == "hevc"


def test_lossless_output_equals_frames_upscaled_as_images(tmp_path: Path, upscaler: Upscaler) -> None:
    src, dst = tmp_path / "in.mkv", tmp_path / "out.mkv"
    make_clip(src, 6, codec="ffv1", pix_fmt="bgr0")
    report = upscale_video(src, dst, upscaler, codec="ffv1", pix_fmt="bgr0")
    assert report.frames == report.upscaled == 6
    got = decode_rgb(dst)
    expected = [upscaler.upscale(frame_image(i)) for i in range(6)]
    assert len(got) == 6
    for g, e in zip(got, expected):
        assert np.array_equal(g, e)


def test_skip_duplicates_reuses_outputs_and_changes_nothing(tmp_path: Path, upscaler: Upscaler) -> None:
    images = [frame_image(i // 3) for i in range(12)]  # every frame shown three times, like anime on threes
    images[4] = images[4].copy()
    images[4][0, 0, 0] ^= 1  # a difference of 1: still a repeat within the threshold
    src = tmp_path / "threes.mkv"
    make_clip(src, 12, codec="ffv1", pix_fmt="bgr0", images=images, gop=12)
    plain = upscale_video(src, tmp_path / "plain.mkv", upscaler, codec="ffv1", pix_fmt="bgr0")
    seen: list[tuple[int, int]] = []
    skipped = upscale_video(src, tmp_path / "skip.mkv", upscaler, codec="ffv1", pix_fmt="bgr0",
                            skip_duplicates=True, progress=lambda d, t: seen.append((d, t)))
    assert (plain.upscaled, plain.duplicates) == (12, 0)
    assert (skipped.upscaled, skipped.duplicates) == (4, 8)
    assert seen[-1] == (12, 12) and len(seen) == 12
    a, b = decode_rgb(tmp_path / "plain.mkv"), decode_rgb(tmp_path / "skip.mkv")
    assert all(np.array_equal(x, y) for i, (x, y) in enumerate(zip(a, b)) if i != 4)
    assert np.abs(a[4].astype(int) - b[4]).max() <= 8
    assert frame_times(tmp_path / "skip.mkv") == frame_times(src)


def test_odd_size_is_padded_with_a_notice(tmp_path: Path) -> None:
    src, dst = tmp_path / "odd.mkv", tmp_path / "odd_x3.mp4"
    make_clip(src, 4, codec="ffv1", pix_fmt="bgr0", size=(33, 25))
    up = Upscaler("realesr-animevideov3-x3", gpu=-1, threads=1)
    report = upscale_video(src, dst, up)
    assert any("99x75" in n and "100x76" in n for n in report.notices)
    with av.open(str(dst)) as c:
        ctx = c.streams.video[0].codec_context
        assert (ctx.width, ctx.height) == (100, 76)
    assert len(frame_times(dst)) == 4


def test_video_found_by_content_and_folders_mix_images_and_videos(tmp_path: Path) -> None:
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    make_clip(folder / "clip.mp4", 4)
    (folder / "still.png").write_bytes(_png(frame_image(0)))
    odd_name = tmp_path / "clip.data"
    odd_name.write_bytes((folder / "clip.mp4").read_bytes())
    assert is_video(odd_name) and not is_video(folder / "still.png")
    result = runner.invoke(app, ["-i", str(folder), "-o", str(out), *FAST])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["clip.mp4", "still.png"]
    assert len(frame_times(out / "clip.mp4")) == 4


def test_progress_line_shows_frames_fps_and_eta() -> None:
    stream = io.StringIO()
    progress = FrameProgress("clip.mp4", stream=stream, enabled=True)
    for done in range(1, 11):
        progress(done, 10)
    progress.close()
    text = stream.getvalue()
    assert "[clip.mp4] 10/10 frames" in text and " fps" in text and "ETA 0:00" in text
    quiet = io.StringIO()
    silent = FrameProgress("clip.mp4", stream=quiet, enabled=False)
    silent(1, 10)
    silent.close()
    assert quiet.getvalue() == ""


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("ext, codec, pix_fmt, name", [
    ("webm", "libvpx-vp9", "yuv420p", "vp9"),
    ("mp4", "libsvtav1", "yuv420p10le", "av1"),
    ("mov", "libx264", "yuv444p", "h264"),
])
def test_other_codecs_containers_and_10_bit(tmp_path: Path, ext: str, codec: str, pix_fmt: str, name: str) -> None:
    src, dst = tmp_path / "in.mp4", tmp_path / f"out.{ext}"
    make_clip(src, 4, audio="aac")
    result = runner.invoke(app, ["-i", str(src), "-o", str(dst), *FAST[:-1], "--codec", codec, "--pix-fmt", pix_fmt, "--crf", "30"])
    assert result.exit_code == 0, result.output
    with av.open(str(dst)) as c:
        ctx = c.streams.video[0].codec_context
        assert (ctx.format.name, ctx.width, ctx.height) == (pix_fmt, 64, 48)
        assert ctx.codec.canonical_name == name
        has_audio = bool(c.streams.audio)
    assert frame_times(dst) == frame_times(src)
    if ext == "webm":  # webm cannot hold AAC: said in a note, the video is still written
        assert not has_audio and "audio stream #1 not copied" in result.output
    else:
        assert has_audio and packets(dst, "audio") == packets(src, "audio")


@pytest.mark.parametrize("ext, codec", [("mp4", "libx264"), ("mkv", "libx265")])
def test_many_chunks_with_b_frames_join_on_time(tmp_path: Path, upscaler: Upscaler, ext: str, codec: str) -> None:
    """Each chunk's encoder has its own reorder delay (and Matroska keeps no dts): the join must
    still give every frame its pts, in a stream that decodes whole."""
    src, dst = tmp_path / f"in.{ext}", tmp_path / f"out.{ext}"
    make_clip(src, 24, durations_ms=[40, 80, 20, 60] * 6, gop=5, audio="aac")
    upscale_video(src, dst, upscaler, codec=codec, chunk_seconds=0.15)
    assert frame_times(dst) == frame_times(src)
    assert len(decode_rgb(dst)) == 24
    assert packets(dst, "audio") == packets(src, "audio")
    with av.open(str(dst)) as c:
        s = c.streams.video[0]
        dts = [p.dts for p in c.demux(s) if p.size and p.dts is not None]
    assert all(a < b for a, b in zip(dts, dts[1:]))
