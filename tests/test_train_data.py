"""Training data: HR folder, paired folders, resumable sampling, unreadable files, sub-image cutting."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from realesr_portable.trainer import prepare_subimages
from realesr_portable.trainer.data import (
    DataError, HRFolderDataset, PairedDataset, ResumableSampler, SampleKey, UnreadableCounter, list_images, make_loader,
)
from train_support import make_folder, photo


def test_hr_folder_recursive_crop_and_flip(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "hr", 40)
    Image.fromarray(photo("coffee.png")[:40, :40]).save(root / "sub" / "x.webp")
    (root / "notes.txt").write_text("not an image")
    ds = HRFolderDataset(root, crop_size=48, use_hflip=True, use_rot=True)
    assert len(ds) == 5 and any(p.suffix == ".webp" for p in ds.files)
    a = ds[SampleKey(0, 1)]
    assert a["ok"] and a["gt"].shape == (3, 48, 48) and a["bad"] == ""  # 40 px reflect-padded to 48
    assert 0.0 <= float(a["gt"].min()) and float(a["gt"].max()) <= 1.0
    assert torch.equal(a["gt"], ds[SampleKey(0, 1)]["gt"])  # the seed decides everything
    crops = {tuple(ds[SampleKey(0, s)]["gt"][:, 0, 0].tolist()) for s in range(12)}
    assert len(crops) > 1  # different seeds: different crops/flips


def test_empty_folder_and_missing_folder(tmp_path: Path) -> None:
    (tmp_path / "empty" / "deep").mkdir(parents=True)
    (tmp_path / "empty" / "deep" / "readme.txt").write_text("x")
    with pytest.raises(DataError, match="no images .* found under"):
        HRFolderDataset(tmp_path / "empty", 32)
    with pytest.raises(DataError, match="does not exist"):
        list_images(tmp_path / "nowhere")


def test_unreadable_images_are_skipped_counted_and_stop_when_too_many(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "hr", 40, nested=False)
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    ds = HRFolderDataset(root, crop_size=32)
    bad_index = [p.name for p in ds.files].index("broken.png")
    sample = ds[SampleKey(bad_index, 0)]
    assert sample["ok"] and sample["gt"].shape == (3, 32, 32) and "broken.png" in sample["bad"]
    assert sample["bad"].count(str(root / "broken.png")) == 1  # once "X: X: cannot decode image ..."
    lenient = UnreadableCounter(len(ds), max_fraction=0.3)
    batch = {"bad": [sample["bad"]], "ok": True}
    assert len(lenient.add(batch)) == 1 and lenient.add(batch) == []  # counted once
    strict = UnreadableCounter(len(ds), max_fraction=0.1)
    with pytest.raises(DataError, match="1 of 5 training images could not be read .*broken.png"):
        strict.add(batch)


def test_all_unreadable_stops(tmp_path: Path) -> None:
    root = tmp_path / "bad"
    root.mkdir()
    for i in range(3):
        (root / f"{i}.jpg").write_bytes(b"not a jpeg")
    ds = HRFolderDataset(root, crop_size=16)
    sample = ds[SampleKey(0, 0)]
    assert not sample["ok"]
    with pytest.raises(DataError, match="3 of 3 training images"):
        UnreadableCounter(len(ds), 0.5).add({"bad": sample["bad"].splitlines(), "ok": False})


def test_paired_dataset_aligned_crop(tmp_path: Path) -> None:
    gt_root, lq_root = tmp_path / "gt", tmp_path / "lq"
    make_folder(gt_root, 64)
    for p in gt_root.rglob("*.png"):
        target = lq_root / p.relative_to(gt_root)
        target.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(p) as im:  # LQ pixel (i, j) == GT pixel (4i, 4j); another extension on purpose
            Image.fromarray(np.asarray(im)[::4, ::4]).save(target.with_suffix(".webp"), lossless=True)
    ds = PairedDataset(gt_root, lq_root, gt_size=32, scale=4, use_hflip=False)
    for seed in range(4):
        s = ds[SampleKey(1, seed)]
        assert s["lq"].shape == (3, 8, 8) and s["gt"].shape == (3, 32, 32)
        assert torch.equal(s["gt"][:, ::4, ::4], s["lq"])  # the windows line up
    flipped = PairedDataset(gt_root, lq_root, gt_size=32, scale=4, use_hflip=True, use_rot=True)
    assert {tuple(flipped[SampleKey(0, k)]["lq"].shape) for k in range(4)} == {(3, 8, 8)}
    (lq_root / "img0.webp").unlink()
    with pytest.raises(DataError, match="no LQ image for .*img0.png"):
        PairedDataset(gt_root, lq_root, gt_size=32, scale=4)


def test_sampler_resumes_exactly_and_shards_ranks() -> None:
    full = list(itertools.islice(iter(ResumableSampler(10, seed=3)), 25))
    assert sorted(k.index for k in full[:10]) == list(range(10))  # one epoch = a permutation
    resumed = list(itertools.islice(iter(ResumableSampler(10, seed=3, start=13)), 12))
    assert resumed == full[13:25]
    r0 = [k.index for k in itertools.islice(iter(ResumableSampler(10, 3, rank=0, world=2)), 5)]
    r1 = [k.index for k in itertools.islice(iter(ResumableSampler(10, 3, rank=1, world=2)), 5)]
    assert sorted(r0 + r1) == list(range(10))


def test_loader_same_batches_with_workers(tmp_path: Path) -> None:
    ds = HRFolderDataset(make_folder(tmp_path / "hr", 40), crop_size=32, use_rot=True)
    a = make_loader(ds, 2, seed=0, rank=0, world=1, start_batch=1, num_workers=0)
    b = make_loader(ds, 2, seed=0, rank=0, world=1, start_batch=1, num_workers=2)
    for _ in range(3):
        assert torch.equal(next(a)["gt"], next(b)["gt"])


def test_prepare_subimages(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(photo("astronaut.png")[:200, :150]).save(src / "a.png")
    (src / "broken.jpg").write_bytes(b"nope")
    out = tmp_path / "out"
    code = prepare_subimages.main([str(src), str(out), "--crop-size", "96", "--step", "48", "--scales", "1,0.5", "--workers", "1"])
    assert code == 0
    meta = (out / "meta_info.txt").read_text().splitlines()
    # full size 200x150: rows 0,48,96,104 x cols 0,48,54 -> 4 x 3; half size 100x75: rows 0,4 x one col
    assert prepare_subimages.window_starts(200, 96, 48, 0) == [0, 48, 96, 104]
    assert prepare_subimages.window_starts(150, 96, 48, 10) == [0, 48]  # leftover 6 <= thresh
    assert len(meta) == 4 * 3 + 2 * 1
    assert all((out / line).is_file() for line in meta)
    with Image.open(out / meta[0]) as im:
        assert im.size == (96, 96)
        assert np.array_equal(np.asarray(im), photo("astronaut.png")[:96, :96])
    ds = HRFolderDataset(out, 64, meta_file=out / "meta_info.txt")
    assert len(ds) == len(meta)


def test_training_reads_images_like_the_runtime(tmp_path: Path) -> None:
    """EXIF orientation applied and 16 bits kept, in the loader and in the sub-image cutter."""
    from realesr_portable.trainer.data import read_image

    src = tmp_path / "src"
    src.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(photo("astronaut.png")[:40, :60]).save(src / "turned.jpg", exif=exif.tobytes(), quality=95)
    deep = (np.arange(30 * 20, dtype=np.uint16).reshape(30, 20) * 97)
    Image.fromarray(deep).save(src / "deep.png")
    assert read_image(src / "turned.jpg").shape == (60, 40, 3)
    gray16 = read_image(src / "deep.png")
    assert gray16.shape == (30, 20, 3) and np.allclose(gray16[..., 0], deep / 65535.0, atol=1e-7)
    out = tmp_path / "out"
    assert prepare_subimages.main([str(src), str(out), "--crop-size", "100", "--workers", "1"]) == 0
    with Image.open(out / "turned_s001.png") as im:
        assert im.size == (40, 60)
    with Image.open(out / "deep_s001.png") as im:
        assert np.array_equal(np.asarray(im), deep)  # still 16-bit
