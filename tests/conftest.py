"""Shared, generic fixtures: real photos from the scikit-image wheel, cropped small."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def _skimage_photo(name: str) -> Path:
    """Path of a photo shipped in scikit-image's `skimage/data` folder."""
    import skimage

    path = Path(skimage.__file__).parent / "data" / name
    if not path.is_file():
        raise FileNotFoundError(path)
    return path


def _photo_crop(name: str, top: int, left: int, height: int, width: int) -> np.ndarray:
    """A (height, width, 3) uint8 crop of a real photo."""
    with Image.open(_skimage_photo(name)) as im:
        return np.asarray(im.convert("RGB"))[top : top + height, left : left + width].copy()


@pytest.fixture
def skimage_photo() -> Callable[[str], Path]:
    """`skimage_photo("rocket.jpg")` -> path of that photo in scikit-image's data folder."""
    return _skimage_photo


@pytest.fixture
def photo_crop() -> Callable[[str, int, int, int, int], np.ndarray]:
    """`photo_crop(name, top, left, height, width)` -> (h, w, 3) uint8 crop of a real photo."""
    return _photo_crop


@pytest.fixture(autouse=True, scope="session")
def _private_calibration_cache(tmp_path_factory: pytest.TempPathFactory):
    """Device calibrations (plan/cost.py) and precision-probe verdicts go to a folder of this test run, not the user's cache."""
    import os

    old = os.environ.get("REALESR_PORTABLE_CACHE")
    os.environ["REALESR_PORTABLE_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        os.environ.pop("REALESR_PORTABLE_CACHE", None)
    else:
        os.environ["REALESR_PORTABLE_CACHE"] = old
