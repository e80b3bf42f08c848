"""Batch upscaling on a Ray cluster (`realesr-portable --ray`); needs the `distributed` extra.

Importing this package does not import Ray: `upscale_many` does, when a job starts.
"""

from .run import RayMissingError, Summary, upscale_many

__all__ = ["RayMissingError", "Summary", "upscale_many"]
