"""The file suffixes taken as images and as videos when a folder or glob is expanded.

Why its own module: the batch planner lists both kinds in a folder and the video probe tells
them apart; each needs the other's list, and neither should import the other's package.
"""

from __future__ import annotations

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif",
                  ".jfif", ".jpe", ".tga", ".ppm", ".pgm", ".pbm", ".pnm")  # a folder once skipped these silently
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mkv", ".mov", ".webm", ".avi", ".ts", ".mts", ".m2ts", ".flv", ".wmv",
                  ".mpg", ".mpeg", ".nut", ".ogv", ".3gp")
