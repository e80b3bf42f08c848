"""Tiny clips made with PyAV for the video tests: CFR/VFR, audio, subtitles, rotation, chapters."""

from __future__ import annotations

import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

MS = Fraction(1, 1000)


def frame_image(i: int, width: int = 32, height: int = 24) -> np.ndarray:
    """A frame with structure (gradients + a moving block) so upscaling is not trivial."""
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([(x * 7 + i * 5) % 256, (y * 9 + i * 3) % 256, ((x + y) * 4) % 256], axis=2).astype(np.uint8)
    image[(i * 2) % height : (i * 2) % height + 5, (i * 3) % width : (i * 3) % width + 6] = (250, 30, 30)
    return image


def make_clip(path: Path, frames: int = 12, *, durations_ms: list[int] | None = None, codec: str = "libx264",
              pix_fmt: str = "yuv420p", gop: int = 4, audio: str | None = None, subtitles: bool = False,
              rotation: int = 0, chapters: bool = False, images: list[np.ndarray] | None = None,
              size: tuple[int, int] = (32, 24)) -> list[int]:
    """Write a clip; returns the pts (ms) of its frames. `durations_ms` makes it variable frame rate."""
    durations = durations_ms or [40] * frames
    pts = [sum(durations[:i]) for i in range(frames)]
    with av.open(str(path), "w") as out:
        out.metadata["title"] = "test clip"
        video = out.add_stream(codec, rate=25, options={"g": str(gop), "keyint_min": "1"} if codec == "libx264" else {"g": str(gop)})
        video.width, video.height, video.pix_fmt = size[0], size[1], pix_fmt
        video.time_base = video.codec_context.time_base = MS
        video.metadata["language"] = "jpn"
        if rotation:
            video.set_display_rotation(rotation)
        sound = None
        if audio:
            sound = out.add_stream(audio, rate=48000, layout="mono")
            sound.metadata["language"] = "eng"
        text = out.add_mux_stream("subrip") if subtitles else None
        if text is not None:
            text.metadata["language"] = "fra"
        if chapters:
            out.set_chapters([{"id": 1, "start": 0, "end": pts[-1], "time_base": MS, "metadata": {"title": "Part 1"}}])
        for i in range(frames):
            image = images[i] if images is not None else frame_image(i, *size)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base, frame.duration = pts[i], MS, durations[i]
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        if sound is not None:
            _sine(out, sound, (pts[-1] + durations[-1]) / 1000)
        if text is not None:
            for j, start in enumerate(pts[::4]):
                packet = av.Packet(f"line {j}".encode())
                packet.stream, packet.time_base = text, MS
                packet.pts = packet.dts = start
                packet.duration = 100
                out.mux(packet)
    return pts


def _sine(out, stream, seconds: float) -> None:
    rate, n = 48000, int(48000 * seconds)
    wave = (0.3 * np.sin(np.arange(n) * 2 * np.pi * 440 / rate)).astype(np.float32)[None]
    step = 960
    for start in range(0, n, step):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave[:, start : start + step]), format="flt", layout="mono")
        frame.sample_rate, frame.pts = rate, start
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode(None):
        out.mux(packet)


def frame_times(path: Path) -> list[Fraction]:
    """Presentation times (seconds, exact) of the video frames, from packets."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return sorted(p.pts * s.time_base for p in c.demux(s) if p.size and p.pts is not None)


def decode_rgb(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def packets(path: Path, kind: str) -> list[tuple[Fraction, bytes]]:
    """(time, payload) of every packet of the first stream of `kind`."""
    with av.open(str(path)) as c:
        s = getattr(c.streams, kind)[0]
        return [(p.pts * s.time_base, bytes(p)) for p in c.demux(s) if p.size and p.pts is not None]


class FailAfter:
    """An upscaler that breaks after `n` frames, leaving a work folder with finished chunks.

    `wait_for`: a chunk file to wait for before breaking (the encoder thread finishes a chunk
    after the frames have left the upscaler, so without it the crash may come first)."""

    def __init__(self, inner, n: int, wait_for: Path | None = None) -> None:
        self.inner, self.left, self.wait_for = inner, n, wait_for
        for name in ("spec", "options", "settings"):
            if hasattr(inner, name):
                setattr(self, name, getattr(inner, name))

    def upscale(self, image: np.ndarray) -> np.ndarray:
        self.left -= 1
        if self.left < 0:
            deadline = time.monotonic() + 60
            while self.wait_for is not None and not self.wait_for.exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            raise RuntimeError("simulated crash")
        return self.inner.upscale(image)
