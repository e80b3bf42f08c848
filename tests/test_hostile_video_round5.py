"""Hostile round 5 on video: colour range, containers the output cannot be, names, notes.

Each test comes from a broken promise found by probing (tiny clips, Nearest upscaler where only
the plumbing is under test).
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from realesr_portable.video import upscale_video
from video_support import decode_rgb, make_clip

BLACK_WHITE = [np.zeros((24, 32, 3), np.uint8), np.full((24, 32, 3), 255, np.uint8)] * 2


class Nearest:
    """Pixel repetition: the pixels in are the pixels out, so colour handling alone is tested."""

    def upscale(self, image: np.ndarray) -> np.ndarray:
        return image.repeat(2, 0).repeat(2, 1)

    def settings(self) -> dict:
        return {"upscaler": "nearest x2"}


def _range_and_levels(path: Path) -> tuple[int, int, int]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        levels = [frame.to_ndarray(format="rgb24") for frame in frames]
        return int(frames[0].color_range), int(levels[0].max()), int(levels[1].min())


@pytest.mark.parametrize("pix_fmt, out_fmt", [("yuvj420p", "yuv420p"), ("yuv420p", "yuvj420p"), ("yuvj420p", "yuvj420p")])
def test_full_range_video_keeps_black_black_and_white_white(tmp_path: Path, pix_fmt: str, out_fmt: str) -> None:
    """A full-range (yuvj) input came out with limited-range pixels under a full-range tag:
    black played as 16 and white as 235, washed out, exit 0."""
    src, dst = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_clip(src, 4, pix_fmt=pix_fmt, images=BLACK_WHITE)
    upscale_video(src, dst, Nearest(), pix_fmt=out_fmt)
    tag, black_max, white_min = _range_and_levels(dst)
    assert black_max <= 6 and white_min >= 245, (tag, black_max, white_min)  # broken: 16 and 235
    if pix_fmt.startswith("yuvj") or out_fmt.startswith("yuvj"):
        assert tag == 2  # full range, as the pixels are


def test_a_folder_with_a_video_in_an_unwritable_container_is_done_whole(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """A .flv (or .ts, .mpg) in a folder once stopped the whole batch, images included, with
    "unsupported video container .flv" (exit 2): its output now goes to NAME.mkv, with a note."""
    from PIL import Image

    from realesr_portable.cli import main

    src = tmp_path / "mix"
    src.mkdir()
    _with_extras(src / "clip.flv", fmt="flv")  # a container FFmpeg reads but the runtime does not write
    make_clip(src / "base.mp4", 4)
    Image.new("RGB", (8, 6), (10, 200, 30)).save(src / "a.png")
    out = tmp_path / "out"
    assert main(["-i", str(src), "-o", str(out), "-n", "realesr-animevideov3-x2", "-g", "-1"]) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"note: {src / 'clip.flv'}: written as clip.mkv" in err, err
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "base.mp4", "clip.mkv"]
    frames = decode_rgb(out / "clip.mkv")
    assert len(frames) == 4 and frames[0].shape == (48, 64, 3)


def test_a_newline_in_a_video_name_stays_on_its_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A broken video named `bad\\nname.mp4` split its error line in two."""
    from realesr_portable.cli import main

    src = tmp_path / "in"
    src.mkdir()
    (src / "bad\nname.mp4").write_bytes(b"not a video at all")
    make_clip(src / "good\nclip.mp4", 3)
    assert main(["-i", str(src), "-o", str(tmp_path / "out"), "-n", "realesr-animevideov3-x2", "-g", "-1"]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert any(line.startswith("realesr-portable: error: ") and "bad\\nname.mp4: not a readable video" in line
               for line in lines), lines
    assert any("good\\nclip.mp4: 3 frames" in line for line in lines), lines
    assert all(line.startswith(("realesr-portable: ", "  ")) for line in lines), lines


def test_resume_takes_a_scale_equal_to_the_models(tmp_path: Path) -> None:
    """A run without -s on an x2 model, resumed with `-s 2`, was refused as "made with other
    settings (-s None -> 2.0)" although the pixels are the same; it now resumes, equal to an
    uninterrupted run."""
    from typer.testing import CliRunner

    from realesr_portable.api import Upscaler
    from realesr_portable.cli import app
    from video_support import FailAfter

    src, dst, whole = tmp_path / "in.mkv", tmp_path / "out.mkv", tmp_path / "whole.mkv"
    make_clip(src, 12, codec="ffv1", pix_fmt="bgr0", gop=4)
    inner = Upscaler("realesr-animevideov3-x2", gpu=-1, threads=1)
    work = tmp_path / ".out.mkv.resume"
    with pytest.raises(RuntimeError, match="simulated crash"):
        upscale_video(src, dst, FailAfter(inner, 6, wait_for=work / "segment_00000.mkv"), codec="ffv1",
                      pix_fmt="bgr0", chunk_seconds=0.1)
    assert sorted(work.glob("segment_*"))  # something to resume
    common = ["-n", "realesr-animevideov3-x2", "-g", "-1", "--threads", "1", "-q", "--codec", "ffv1", "--pix-fmt", "bgr0"]
    result = CliRunner().invoke(app, ["-i", str(src), "-o", str(dst), "-s", "2", "--resume", *common])
    assert result.exit_code == 0, result.output
    assert CliRunner().invoke(app, ["-i", str(src), "-o", str(whole), *common]).exit_code == 0
    assert all(np.array_equal(a, b) for a, b in zip(decode_rgb(dst), decode_rgb(whole), strict=True))


def _with_extras(path: Path, *, audio: str | None = None, timecode: str | None = None, font: bool = False,
                 fmt: str | None = None) -> None:
    """A 4-frame 25 fps clip with an audio codec, a video timecode tag or a font attachment
    (container `fmt`, default: the suffix's)."""
    with av.open(str(path), "w", format=fmt) as out:
        video = out.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 32, 24, "yuv420p"
        if timecode:
            video.metadata["timecode"] = timecode
        sound = out.add_stream(audio, rate=48000, layout="mono") if audio else None
        if font:
            out.add_attachment("font.ttf", "application/x-truetype-font", b"\0\1\0\0 not really a font")
        for i in range(4):
            frame = av.VideoFrame.from_ndarray(np.full((24, 32, 3), 50 * i, np.uint8), format="rgb24")
            frame.pts = i
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        if sound is not None:
            samples = av.AudioFrame.from_ndarray(np.zeros((1, 960 * 8), np.float32 if audio == "libopus" else np.int16),
                                                 format="flt" if audio == "libopus" else "s16", layout="mono")
            samples.sample_rate, samples.pts = 48000, 0
            for packet in [*sound.encode(samples), *sound.encode(None)]:
                out.mux(packet)


@pytest.mark.parametrize("audio", ["libopus", "flac"])
def test_an_audio_codec_the_output_refuses_is_dropped_with_a_note_not_after_the_work(tmp_path: Path, audio: str) -> None:
    """Opus or FLAC from .mkv into .mov: every frame was upscaled, then "joining the chunks failed
    (Invalid argument)", exit 1, and every --resume failed the same way."""
    src, dst = tmp_path / "in.mkv", tmp_path / "out.mov"
    _with_extras(src, audio=audio)
    report = upscale_video(src, dst, Nearest())
    assert report.frames == 4 and len(decode_rgb(dst)) == 4
    assert any(f"audio stream #1 not copied (the mov container refuses {audio.removeprefix('lib')}" in n
               for n in report.notices), report.notices
    with av.open(str(dst)) as out:
        assert [s.type for s in out.streams] == ["video"]


@pytest.mark.parametrize("suffix", [".mp4", ".mov"])
def test_a_timecode_is_kept_not_fatal(tmp_path: Path, suffix: str) -> None:
    """A video with a timecode (a tmcd track) failed at the join after all the upscaling."""
    src, dst = tmp_path / f"in{suffix}", tmp_path / f"out{suffix}"
    _with_extras(src, timecode="10:00:00:00")
    report = upscale_video(src, dst, Nearest())
    assert report.frames == 4 and not report.notices, report.notices
    with av.open(str(dst)) as out:
        assert out.streams.video[0].metadata.get("timecode") == "10:00:00:00"


def test_an_attachment_that_is_not_copied_is_named(tmp_path: Path) -> None:
    """A Matroska font attachment vanished without a word."""
    src, dst = tmp_path / "in.mkv", tmp_path / "out.mkv"
    _with_extras(src, font=True)
    report = upscale_video(src, dst, Nearest())
    assert report.frames == 4
    assert any("attachment stream #1 (font.ttf) not copied" in n for n in report.notices), report.notices


@pytest.mark.parametrize("codec, pix_fmt, noted", [("ffv1", "yuva420p", True), ("png", "rgba", True), ("ffv1", "bgr0", False),
                                                   ("libx264", "yuv420p", False)])
def test_a_dropped_alpha_plane_is_noted(tmp_path: Path, codec: str, pix_fmt: str, noted: bool) -> None:
    """Transparency in a video input vanished without a word (frames travel as RGB)."""
    src, dst = tmp_path / ("in.mov" if codec == "png" else "in.mkv"), tmp_path / "out.mkv"
    make_clip(src, 3, codec=codec, pix_fmt=pix_fmt)
    report = upscale_video(src, dst, Nearest())
    assert report.frames == 3
    assert any(f"its alpha channel ({pix_fmt}) is dropped" in n for n in report.notices) == noted, report.notices


def _remux(src: Path, dst: Path, *, shift_s: float = 0.0, skip: int = 0) -> None:
    """Copy `src`'s video packets into `dst`: pts/dts moved by -shift_s (a negative start: an mp4
    edit list hiding pre-roll, as `ffmpeg -ss ... -c copy` writes) or the first `skip` dropped (a
    recording that starts mid-GOP)."""
    with av.open(str(src)) as source, av.open(str(dst), "w") as out:
        stream = source.streams.video[0]
        copied = out.add_stream_from_template(stream)
        shift = int(shift_s / stream.time_base)
        for index, packet in enumerate(source.demux(stream)):
            if not packet.size or index < skip:
                continue
            packet.pts, packet.dts = packet.pts - shift, packet.dts - shift
            packet.stream = copied
            out.mux(packet)


@pytest.mark.parametrize("kind", ["edit list", "mid-GOP"])
def test_frames_the_decoder_never_shows_are_not_counted_missing(tmp_path: Path, kind: str) -> None:
    """A complete mp4 whose edit list hides 3 pre-roll frames, and a .ts that starts mid-GOP, were
    refused as "segment 0: decoded 5 of 8 frames (truncated or damaged input?)", not naming the file."""
    base = tmp_path / "base.mp4"
    make_clip(base, 8 if kind == "edit list" else 10, gop=8 if kind == "edit list" else 4)
    src = tmp_path / ("cut.mp4" if kind == "edit list" else "cut.ts")
    _remux(base, src, shift_s=0.12) if kind == "edit list" else _remux(base, src, skip=2)
    with av.open(str(src)) as container:
        shown = [frame.pts for frame in container.decode(container.streams.video[0])]
    dst = tmp_path / "out.mkv"
    report = upscale_video(src, dst, Nearest())
    assert report.frames == len(shown) == len(decode_rgb(dst)) > 0
    if kind == "mid-GOP":
        assert any("2 frame(s) before the first keyframe cannot be decoded; skipped" in n for n in report.notices), report.notices


def test_an_encoder_side_error_names_the_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """"segment 0: decoded 5 of 8 frames" named no file: in a folder of videos, which one?"""
    from realesr_portable.video import VideoError, pipeline

    def broken(path: Path, *args: object, **kwargs: object) -> None:
        raise VideoError("segment 0: decoded 1 of 4 frames (truncated or damaged input?)")

    src = tmp_path / "clip.mp4"
    make_clip(src, 4)
    monkeypatch.setattr(pipeline, "encode_chunk", broken)
    with pytest.raises(VideoError) as caught:
        upscale_video(src, tmp_path / "out.mkv", Nearest())
    assert str(caught.value) == f"{src}: segment 0: decoded 1 of 4 frames (truncated or damaged input?)"
    assert not (tmp_path / "out.mkv").exists()


def test_a_frame_size_change_mid_stream_is_refused_in_one_line(tmp_path: Path) -> None:
    """Two recordings joined (48x32 then 32x24) came out padded and smeared, exit 0; small then
    large failed with "ValueError: index can't contain negative values"."""
    from realesr_portable.video import VideoError

    parts = [tmp_path / "a.ts", tmp_path / "b.ts"]  # in-band SPS/PPS, so the decoder sees the change
    make_clip(parts[0], 4, size=(48, 32))
    make_clip(parts[1], 4, size=(32, 24))
    src = tmp_path / "joined.ts"
    with av.open(str(src), "w") as out:
        copied = None
        offset = 0
        for part in parts:
            with av.open(str(part)) as source:
                stream = source.streams.video[0]
                copied = copied or out.add_stream_from_template(stream)
                last = 0
                for packet in source.demux(stream):
                    if not packet.size:
                        continue
                    packet.pts, packet.dts = packet.pts + offset, packet.dts + offset
                    last = max(last, packet.pts)
                    packet.stream = copied
                    out.mux(packet)
                offset = last + int(0.04 / stream.time_base)
    with pytest.raises(VideoError, match=r"joined.ts: the frame size changes from 48x32 to 32x24 at [0-9.]+ s; split"):
        upscale_video(src, tmp_path / "out.mkv", Nearest())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.ts", "b.ts", "joined.ts"]
