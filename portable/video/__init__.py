"""Video through PyAV: decode, upscale each frame, encode, with exact timestamps and resumable segments.

Nothing here imports `av` at import time: PyAV is the optional `video` extra.
"""

from .api import VideoReport, upscale_video
from .probe import VIDEO_SUFFIXES, VideoError, is_video

__all__ = ["VIDEO_SUFFIXES", "VideoError", "VideoReport", "is_video", "upscale_video"]
