"""The high-order degradation pipeline of Real-ESRGAN: seeded, batched, on any device.

Public API: `DegradationConfig` (+ `StageConfig`, `KernelConfig`, `FinalConfig`, `USMConfig`),
`Degrader`, `degrade`, `usm_sharp`, `paired_random_crop`, `TrainingPairPool`, `jpeg`.
"""

from .config import ConfigError, DegradationConfig, FinalConfig, KernelConfig, StageConfig, USMConfig
from .crop import paired_random_crop
from .filters import usm_sharp
from .jpeg import jpeg
from .pipeline import DegradationResult, Degrader, degrade
from .pool import TrainingPairPool

__all__ = [
    "ConfigError",
    "DegradationConfig",
    "DegradationResult",
    "Degrader",
    "FinalConfig",
    "KernelConfig",
    "StageConfig",
    "TrainingPairPool",
    "USMConfig",
    "degrade",
    "jpeg",
    "paired_random_crop",
    "usm_sharp",
]
