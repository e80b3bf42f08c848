"""Batch upscaling on a Ray cluster (`realesr-portable --ray`); needs the `distributed` extra.

Importing this package does not import Ray: `upscale_many` does, when a job starts.
"""

from ..batch.report import Report
from .run import RayMissingError, upscale_many

__all__ = ["RayMissingError", "Report", "upscale_many"]
