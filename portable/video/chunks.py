"""Keyframe-aligned chunks and the work folder that makes a killed job resumable.

The work folder `.NAME.resume/` sits beside the output. Its manifest records the input's identity,
the settings and the chunk plan; each finished chunk is a complete file written atomically,
so after a crash (even SIGKILL) a chunk file either exists whole or not at all. `--resume`
re-uses the finished ones and encodes the rest; a folder made for another input or other settings
is refused rather than silently mixed in.
"""

from __future__ import annotations

import bisect
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..atomic import write_bytes_atomic
from .probe import VideoError, VideoInfo

MANIFEST_VERSION = 3  # 2: settings keyed by option name, with model hashes, --dn, --fp32, device; 3: every pixel field of UpscaleOptions


@dataclass(frozen=True)
class Chunk:
    """Frames with start_pts <= pts < end_pts (end None: to the end); `frames` counts them."""

    index: int
    start_pts: int
    end_pts: int | None
    frames: int

    def holds(self, pts: int) -> bool:
        return pts >= self.start_pts and (self.end_pts is None or pts < self.end_pts)


def plan_chunks(info: VideoInfo, seconds: float) -> list[Chunk]:
    """Cut at input keyframes, each chunk at least `seconds` long (the last may be shorter).

    Starting at a keyframe lets a resumed run seek straight to the chunk instead of decoding
    everything before it.
    """
    first = info.frame_pts[0]
    limit = seconds / float(info.time_base)
    starts = [first]
    for key in info.keyframe_pts:
        if key > starts[-1] and key - starts[-1] >= limit:
            starts.append(key)
    chunks = []
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else None
        first = bisect.bisect_left(info.frame_pts, start)
        stop = len(info.frame_pts) if end is None else bisect.bisect_left(info.frame_pts, end)
        chunks.append(Chunk(i, start, end, stop - first))
    return chunks


def chunk_of(chunks: list[Chunk], pts: int) -> Chunk | None:
    """The chunk holding `pts` among `chunks` (sorted by start), or None."""
    at = bisect.bisect_right([s.start_pts for s in chunks], pts) - 1
    return chunks[at] if at >= 0 and chunks[at].holds(pts) else None


def _change(key: str, old: object, new: object) -> str:
    """`--dn 0.5 -> 0.8`; a hash only as `model files differ`."""
    if isinstance(old, str) and isinstance(new, str) and max(len(old), len(new)) >= 32:
        return f"{key} differ"
    return f"{key} {old} -> {new}"


class WorkFolder:
    """`.NAME.resume/` beside the output: manifest plus one file per finished chunk."""

    def __init__(self, dst: Path) -> None:
        self.dst = dst
        self.path = dst.parent / f".{dst.name}.resume"
        self.manifest_path = self.path / "manifest.json"

    def chunk_path(self, chunk: Chunk) -> Path:
        return self.path / f"segment_{chunk.index:05d}{self.dst.suffix.lower()}"

    def is_done(self, chunk: Chunk) -> bool:
        return self.chunk_path(chunk).is_file()

    def open(self, identity: dict, settings: dict, planned: list[Chunk], resume: bool) -> list[Chunk]:
        """Create the folder, or (resume) check it belongs to this job; returns the chunk plan to use."""
        if self.path.exists():
            if not resume:
                raise VideoError(f"{self.dst}: an unfinished run left {self.path}; add --resume to continue it "
                                 "or delete that folder")
            return self._reuse(identity, settings)
        try:
            self.path.mkdir()
            manifest = {"version": MANIFEST_VERSION, "input": identity, "settings": settings,
                        "segments": [[s.start_pts, s.end_pts, s.frames] for s in planned]}
            write_bytes_atomic(self.manifest_path, json.dumps(manifest, indent=1).encode())
        except OSError as exc:
            raise VideoError(f"{self.path}: cannot create the work folder ({exc.strerror or exc})") from None
        return planned

    def _reuse(self, identity: dict, settings: dict) -> list[Chunk]:
        try:
            manifest = json.loads(self.manifest_path.read_text(encoding="utf-8"))
            rows = manifest["segments"]
            old_input, old_settings = manifest["input"], manifest["settings"]
            version = manifest["version"]
        except (OSError, ValueError, KeyError, TypeError):
            raise VideoError(f"{self.path}: not a readable resume folder (no valid manifest.json); delete it") from None
        if version != MANIFEST_VERSION:
            raise VideoError(f"{self.path}: made by another version of realesr-portable; delete it to start again")
        if old_input != identity:
            raise VideoError(f"{self.path}: made for a different input file (size, date or content differ); "
                             "delete it to start again")
        if old_settings != settings:
            changed = [_change(k, old_settings.get(k), settings.get(k))
                       for k in sorted(set(old_settings) | set(settings)) if old_settings.get(k) != settings.get(k)]
            raise VideoError(f"{self.path}: made with other settings ({'; '.join(changed)}); "
                             "use the same options or delete it")
        return [Chunk(i, int(a), None if b is None else int(b), int(n)) for i, (a, b, n) in enumerate(rows)]

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
