"""Video path vs the same frames upscaled as in-memory images, and what --skip-duplicates saves.

Run: `python -m pytest bench/bench_video.py -s` (480p: minutes per frame on a 2-core CPU; set
REALESR_BENCH_VIDEO_SIZE=WxH and REALESR_BENCH_VIDEO_FRAMES=N for a quicker look). The clip is made
here from a real photo (scikit-image's coffee.png) panned across the frame, encoded lossless so
decoding is cheap and exact. `test_video_path_cost_without_the_model` times the whole video path
with a free stand-in for the model: an upper bound on what video adds per frame, robust to noise.
The two paths run interleaved, image rounds and video rounds
alternating, so machine noise hits both alike; `extra_info["video_over_images"]` is the ratio of
their best rounds (the issue's target: at most 1.10).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from realesr_portable.api import Upscaler
from realesr_portable.video import upscale_video

SIZE = tuple(int(v) for v in os.environ.get("REALESR_BENCH_VIDEO_SIZE", "854x480").split("x"))
FRAMES = int(os.environ.get("REALESR_BENCH_VIDEO_FRAMES", "6"))
ROUNDS = int(os.environ.get("REALESR_BENCH_VIDEO_ROUNDS", "2"))


def _frames(count: int, repeat: int = 1) -> list[np.ndarray]:
    """`count` frames panning over a real photo; each distinct frame shown `repeat` times."""
    import skimage

    width, height = SIZE
    with Image.open(Path(skimage.__file__).parent / "data" / "coffee.png") as im:
        photo = np.asarray(im.convert("RGB").resize((width + 64, height + 64), Image.Resampling.LANCZOS))
    return [np.ascontiguousarray(photo[(i // repeat) % 64 : (i // repeat) % 64 + height, (i // repeat) * 2 % 64 :][:, :width])
            for i in range(count)]


def _write(path: Path, frames: list[np.ndarray]) -> None:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("ffv1", rate=24)
        stream.width, stream.height, stream.pix_fmt = SIZE[0], SIZE[1], "bgr0"
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def _decoded(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def _best(runs: list[float]) -> float:
    return min(runs)


class _Nearest:
    """Stands in for the model (pixel repetition, ~free), so a run measures only what the video path
    adds: decode, colour conversion, encode, segment files and the final remux."""

    def __init__(self, scale: int) -> None:
        self.scale = scale

    def upscale(self, image: np.ndarray) -> np.ndarray:
        return np.repeat(np.repeat(image, self.scale, axis=0), self.scale, axis=1)


@pytest.mark.parametrize("scale", [2, 4])
def test_video_path_cost_without_the_model(benchmark, tmp_path: Path, scale: int) -> None:
    src = tmp_path / "clip.mkv"
    _write(src, _frames(FRAMES))
    up = _Nearest(scale)

    def once() -> None:
        dst = tmp_path / "out.mp4"
        dst.unlink(missing_ok=True)
        upscale_video(src, dst, up)

    benchmark.pedantic(once, rounds=ROUNDS, iterations=1)
    seconds = benchmark.stats.stats.min
    benchmark.extra_info.update(scale=scale, size=f"{SIZE[0]}x{SIZE[1]}", frames=FRAMES, s_per_frame=seconds / FRAMES)
    print(f"\nvideo path without the model, x{scale} {SIZE[0]}x{SIZE[1]}: {seconds / FRAMES:.3f} s per frame")
    assert seconds > 0


@pytest.mark.parametrize("name", ["realesr-animevideov3-x2", "realesr-animevideov3-x4"])
def test_video_vs_images(benchmark, tmp_path: Path, name: str) -> None:
    src = tmp_path / "clip.mkv"
    _write(src, _frames(FRAMES))
    images = _decoded(src)  # decoded before timing: the image path gets its frames for free
    up = Upscaler(name, gpu=-1)
    image_runs, video_runs, image_cpu, video_cpu = [], [], [], []

    def video_round() -> None:
        dst = tmp_path / "out.mp4"
        dst.unlink(missing_ok=True)
        start, cpu = time.perf_counter(), time.process_time()
        upscale_video(src, dst, up)  # libx264, yuv420p, encoder defaults: what a user gets
        video_runs.append(time.perf_counter() - start)
        video_cpu.append(time.process_time() - cpu)

    def image_round() -> None:  # pytest-benchmark's untimed setup: runs before each video round
        start, cpu = time.perf_counter(), time.process_time()
        for image in images:
            up.upscale(image)
        image_runs.append(time.perf_counter() - start)
        image_cpu.append(time.process_time() - cpu)

    benchmark.pedantic(video_round, setup=image_round, rounds=ROUNDS, iterations=1)
    ratio = _best(video_runs) / _best(image_runs)
    benchmark.extra_info.update(model=name, size=f"{SIZE[0]}x{SIZE[1]}", frames=FRAMES,
                                images_fps=FRAMES / _best(image_runs), video_fps=FRAMES / _best(video_runs),
                                video_over_images=ratio, image_runs=image_runs, video_runs=video_runs,
                                cpu_video_over_images=_best(video_cpu) / _best(image_cpu), image_cpu=image_cpu,
                                video_cpu=video_cpu)
    print(f"\n{name} {SIZE[0]}x{SIZE[1]} x{FRAMES}: images {FRAMES / _best(image_runs):.3f} fps, "
          f"video {FRAMES / _best(video_runs):.3f} fps, video/images time {ratio:.3f}, "
          f"CPU time {_best(video_cpu) / _best(image_cpu):.3f} (runs: images {image_runs}, video {video_runs})")
    assert ratio > 0


def test_skip_duplicates_savings(benchmark, tmp_path: Path) -> None:
    src = tmp_path / "threes.mkv"
    _write(src, _frames(FRAMES * 3, repeat=3))  # anime "on threes": each drawing held 3 frames
    up = Upscaler("realesr-animevideov3-x2", gpu=-1)
    timings: dict[bool, list[float]] = {False: [], True: []}
    reports = {}

    def run(skip: bool) -> None:
        dst = tmp_path / f"out_{skip}.mp4"
        dst.unlink(missing_ok=True)
        start = time.perf_counter()
        reports[skip] = upscale_video(src, dst, up, skip_duplicates=skip)
        timings[skip].append(time.perf_counter() - start)

    benchmark.pedantic(lambda: run(True), setup=lambda: run(False), rounds=ROUNDS, iterations=1)
    saved = 1 - _best(timings[True]) / _best(timings[False])
    benchmark.extra_info.update(frames=FRAMES * 3, upscaled_with_skip=reports[True].upscaled,
                                duplicates=reports[True].duplicates, time_saved=saved, runs=timings)
    print(f"\nskip-duplicates on {FRAMES * 3} frames on threes: upscaled {reports[True].upscaled}, "
          f"reused {reports[True].duplicates}, time saved {saved:.1%}")
    assert reports[True].duplicates == FRAMES * 2
