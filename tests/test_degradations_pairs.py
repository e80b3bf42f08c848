"""Paired random crop and the training-pair pool."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from realesr_portable.trainer.degradations import TrainingPairPool, paired_random_crop


def _pair(b: int = 4, h: int = 48, w: int = 64, scale: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    gt = torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(0))
    return gt, F.avg_pool2d(gt, scale)


def test_crops_stay_aligned_per_sample():
    gt, lq = _pair()
    gt_c, lq_c = paired_random_crop(gt, lq, 32, 4, torch.Generator().manual_seed(1))
    assert gt_c.shape == (4, 3, 32, 32) and lq_c.shape == (4, 3, 8, 8)
    torch.testing.assert_close(F.avg_pool2d(gt_c, 4), lq_c)  # the LQ crop is the GT crop's LQ


def test_each_sample_gets_its_own_window_and_seed_repeats():
    gt, lq = _pair(b=8, h=96, w=96)
    a = paired_random_crop(gt, lq, 32, 4, torch.Generator().manual_seed(2))[1]
    b = paired_random_crop(gt, lq, 32, 4, torch.Generator().manual_seed(2))[1]
    assert torch.equal(a, b)
    # find each sample's offset in its own LQ: they are not all the same
    offsets = set()
    for i in range(8):
        for t in range(24 - 8 + 1):
            for le in range(24 - 8 + 1):
                if torch.equal(lq[i, :, t : t + 8, le : le + 8], a[i]):
                    offsets.add((t, le))
    assert len(offsets) > 1


def test_list_of_gts_cropped_alike():
    gt, lq = _pair()
    usm = gt * 0.5
    (g1, g2), lq_c = paired_random_crop([gt, usm], lq, 16, 4, torch.Generator().manual_seed(3))
    assert torch.equal(g2, g1 * 0.5)
    torch.testing.assert_close(F.avg_pool2d(g1, 4), lq_c)


def test_crop_errors():
    gt, lq = _pair()
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="smaller than the patch"):
        paired_random_crop(gt, lq, 64, 4, g)
    with pytest.raises(ValueError, match="does not match"):
        paired_random_crop(gt[:, :, :40], lq, 16, 4, g)
    with pytest.raises(ValueError, match="multiple"):
        paired_random_crop(gt, lq, 18, 4, g)


def _batches(n: int, b: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Batches whose pairs carry an id: lq = id, gt = -id, so pairs can be traced."""
    out = []
    for k in range(n):
        ids = torch.arange(k * b, (k + 1) * b, dtype=torch.float32).view(b, 1, 1, 1)
        out.append((ids.expand(b, 3, 2, 2).clone(), -ids.expand(b, 3, 8, 8).clone()))
    return out


def test_pool_fills_then_exchanges_keeping_pairs_together():
    pool = TrainingPairPool(size=12)
    g = torch.Generator().manual_seed(4)
    batches = _batches(8, 4)
    seen = []
    for i, (lq, gt) in enumerate(batches):
        out_lq, out_gt = pool.exchange(lq, gt, g)
        assert torch.equal(out_gt, -out_lq.mean((2, 3), keepdim=True).expand(4, 3, 8, 8))  # pairs intact
        if i < 3:  # filling: passes the batch through
            assert torch.equal(out_lq, lq)
        seen.extend(out_lq[:, 0, 0, 0].tolist())
    assert len(pool) == 12
    stored = pool.state_dict()["lq"][:, 0, 0, 0].tolist()
    # nothing lost, nothing duplicated - except that the pairs that filled the pool were
    # also trained on while filling (as in the reference)
    assert sorted(seen + stored) == sorted(list(range(32)) + list(range(12)))
    assert seen[12:] != list(range(12, 32))  # mixed across batches


def test_pool_size_not_multiple_of_batch_and_disabled():
    pool = TrainingPairPool(size=10)
    g = torch.Generator().manual_seed(5)
    for lq, gt in _batches(6, 4):
        out_lq, _ = pool.exchange(lq, gt, g)
        assert out_lq.shape == lq.shape
    assert len(pool) == 10
    off = TrainingPairPool(size=0)
    lq, gt = _batches(1, 4)[0]
    assert off.exchange(lq, gt, g)[0] is lq
    with pytest.raises(ValueError, match="larger than the pool"):
        TrainingPairPool(size=2).exchange(lq, gt, g)


def test_pool_state_dict_roundtrip_resumes_identically():
    g1, g2 = torch.Generator().manual_seed(6), torch.Generator().manual_seed(6)
    a = TrainingPairPool(size=8)
    batches = _batches(6, 4)
    for lq, gt in batches[:3]:
        a.exchange(lq, gt, g1)
        g2.set_state(g1.get_state())
    b = TrainingPairPool(size=8)
    b.load_state_dict(a.state_dict())
    for lq, gt in batches[3:]:
        ra, rb = a.exchange(lq, gt, g1), b.exchange(lq, gt, g2)
        assert torch.equal(ra[0], rb[0]) and torch.equal(ra[1], rb[1])
    with pytest.raises(ValueError, match="size mismatch"):
        TrainingPairPool(size=9).load_state_dict(a.state_dict())


def test_pool_restored_storage_follows_the_batch():
    """A pool restored from other-device/dtype tensors (a checkpoint loaded on the CPU) moves
    its storage to the incoming batch's device and dtype."""
    a = TrainingPairPool(size=4)
    lq, gt = _batches(1, 4)[0]
    a.exchange(lq.double(), gt.double(), torch.Generator().manual_seed(0))
    b = TrainingPairPool(size=4)
    b.load_state_dict(a.state_dict())
    out_lq, out_gt = b.exchange(lq, gt, torch.Generator().manual_seed(1))
    assert out_lq.dtype == torch.float32 and out_gt.dtype == torch.float32
    assert sorted(out_lq[:, 0, 0, 0].tolist()) == [0.0, 1.0, 2.0, 3.0]
