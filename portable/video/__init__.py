"""Video through PyAV: decode, upscale each frame, encode, with exact timestamps and resumable chunks.

Nothing here imports `av` at import time: PyAV is the optional `video` extra.
"""

from ..suffixes import VIDEO_SUFFIXES
from .api import VideoReport, upscale_video
from .probe import VideoError, is_video

__all__ = ["VIDEO_SUFFIXES", "VideoError", "VideoReport", "is_video", "upscale_video"]
