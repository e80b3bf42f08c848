"""The torch JPEG round trip against Pillow's (libjpeg) encoder + decoder."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import skimage
import torch
from PIL import Image

from realesr_portable.trainer.degradations import jpeg
from realesr_portable.trainer.degradations.jpeg import quant_tables

_DATA = Path(skimage.__file__).parent / "data"


def _photo(name: str, box: tuple[int, int, int, int]) -> np.ndarray:
    top, left, h, w = box
    return np.asarray(Image.open(_DATA / name).convert("RGB"))[top : top + h, left : left + w].copy()


def _pil_roundtrip(img: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=quality)  # Pillow's default: 4:2:0
    return np.asarray(Image.open(buf).convert("RGB"))


def _ours(img: np.ndarray, quality: int) -> np.ndarray:
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    y = jpeg(x, torch.tensor([quality]))
    return (y[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255**2 / mse)) if mse else float("inf")


@pytest.mark.parametrize("quality", [10, 30, 60, 95])
@pytest.mark.parametrize(
    ("name", "box"), [("astronaut.png", (100, 150, 145, 183)), ("coffee.png", (40, 200, 96, 128))]
)
def test_matches_pillow(name, box, quality):
    """Ours vs Pillow at the same quality: >= 44 dB apart (measured 46-49 dB), while the JPEG
    error itself is 27-40 dB - the difference is libjpeg's integer DCT and rounding."""
    img = _photo(name, box)
    pil, ours = _pil_roundtrip(img, quality), _ours(img, quality)
    assert _psnr(ours, pil) >= 44.0
    assert _psnr(ours, pil) > _psnr(pil, img) + 6  # < 1/4 of JPEG's own squared error
    assert abs(_psnr(ours, img) - _psnr(pil, img)) < 0.3


def test_tables_equal_pillows_and_orientation_matters():
    img = _photo("chelsea.png", (50, 80, 64, 64))
    for q in (25, 50, 75, 90):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", quality=q)
        tables = Image.open(buf).quantization  # natural (row-major) order
        luma, chroma = quant_tables(torch.tensor([q]))
        assert luma[0].flatten().tolist() == list(tables[0])
        assert chroma[0].flatten().tolist() == list(tables[1])
    assert not torch.equal(luma[0], luma[0].T)  # so a transposed table would be caught above


def test_per_sample_quality_and_ragged_canvas():
    imgs = [_photo("astronaut.png", (0, 0, 48, 64)), _photo("rocket.jpg", (100, 100, 48, 64))]
    x = torch.stack([torch.from_numpy(i).permute(2, 0, 1).float() / 255 for i in imgs])
    q = torch.tensor([20, 90])
    batch = jpeg(x, q)
    for b in range(2):
        assert torch.equal(batch[b : b + 1], jpeg(x[b : b + 1], q[b : b + 1]))
    # sample 1 only valid in its 37 x 50 window: same as compressing that crop alone
    sizes = torch.tensor([[48, 64], [37, 50]])
    ragged = jpeg(x, q, sizes)
    alone = jpeg(x[1:, :, :37, :50].contiguous(), q[1:])
    assert torch.equal(ragged[1:, :, :37, :50], alone)
    assert torch.equal(ragged[:1], batch[:1])


def test_odd_size_values_and_input_untouched():
    x = torch.rand(2, 3, 13, 29, generator=torch.Generator().manual_seed(0)) * 1.2 - 0.1
    before = x.clone()
    y = jpeg(x, torch.tensor([50, 75]))
    assert torch.equal(x, before)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert float(y.min()) >= 0 and float(y.max()) <= 1
    assert torch.equal((y * 255).round() / 255, y)  # 8-bit levels, like a decoded file
    with pytest.raises(ValueError, match="RGB"):
        jpeg(x[:, :1], torch.tensor([50, 50]))


def test_lower_quality_loses_more():
    img = _photo("coffee.png", (100, 100, 64, 96))
    errs = [_psnr(_ours(img, q), img) for q in (10, 40, 70, 95)]
    assert errs == sorted(errs)
