"""Training data: an HR folder (for on-the-fly degradation) and LQ/GT pairs.

Every random choice (which image, where to crop, which flip) comes from a numpy generator
seeded by (seed, epoch, position), never from global state, so a run resumed at iteration N
sees exactly the batches an uninterrupted run would, whatever the number of workers.
Unreadable images are skipped (the next image is used instead) and reported with the batch,
so the training loop can count them and stop when too many are bad.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..errors import UserError
from ..image import io as imageio

#: File name endings read as images (case-insensitive).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
#: How many following images a sample may try when its own image cannot be read.
MAX_ATTEMPTS = 20


class DataError(UserError, ValueError):
    """The data folders or files cannot be used; the message names the folder or file."""


def list_images(root: str | Path, meta_file: str | Path | None = None) -> list[Path]:
    """Image files under `root` (recursive, sorted), or those listed in `meta_file`."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist or is not a folder")
    if meta_file:
        files = []
        for number, line in enumerate(_meta_lines(Path(meta_file)), 1):
            rel = Path(line.strip())
            if not line.strip():
                continue
            if rel.is_absolute() or ".." in rel.parts:  # /etc/passwd and ../x were once opened
                raise DataError(f"meta file {meta_file}, line {number}: {line.strip()!r} is not inside {root}; "
                                "list paths relative to the data folder")
            files.append(root / rel)
    else:
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise DataError(f"no images ({', '.join(s[1:] for s in IMAGE_SUFFIXES)}) found under {root}")
    return files


def _meta_lines(meta_file: Path) -> list[str]:
    """The lines of a meta file; a FIFO or device (which would block or never end), a folder or
    binary data is one DataError naming the file."""
    try:
        if meta_file.exists() and not meta_file.is_file():
            raise DataError(f"cannot read meta file {meta_file}: not a regular file")
        return meta_file.read_text(encoding="utf-8-sig").splitlines()  # a Notepad BOM once hid the first file
    except OSError as exc:
        raise DataError(f"cannot read meta file {meta_file}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise DataError(f"meta file {meta_file} is not UTF-8 text") from None


def read_image(path: Path) -> np.ndarray:
    """Read an image as float32 RGB HWC in [0, 1] (8- and 16-bit, gray, palette, alpha dropped).

    The runtime's reader, so training sees photos as users' upscales do: EXIF orientation
    applied, 16-bit colour kept, CMYK converted.
    """
    try:
        pic = imageio.read_image(path, max_pixels=0)
    except imageio.ImageError as exc:
        raise DataError(str(exc)) from None
    rgb = pic.color.astype(np.float32) / pic.max_value
    return np.repeat(rgb, 3, axis=2) if rgb.shape[2] == 1 else rgb


def augment(imgs: list[np.ndarray], rng: np.random.Generator, hflip: bool, rot: bool) -> list[np.ndarray]:
    """Apply the same random horizontal flip / vertical flip / transpose to every HWC array."""
    do_h = hflip and rng.random() < 0.5
    do_v = rot and rng.random() < 0.5
    do_t = rot and rng.random() < 0.5
    out = []
    for img in imgs:
        if do_h:
            img = img[:, ::-1]
        if do_v:
            img = img[::-1]
        if do_t:
            img = img.transpose(1, 0, 2)
        out.append(np.ascontiguousarray(img))
    return out


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))


def pad_to(img: np.ndarray, size: int) -> np.ndarray:
    """Reflect-pad an HWC image on the bottom/right so both sides are at least `size`."""
    h, w = img.shape[:2]
    ph, pw = max(0, size - h), max(0, size - w)
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "symmetric"
        img = np.pad(img, ((0, ph), (0, pw), (0, 0)), mode=mode)
        if img.shape[0] < size or img.shape[1] < size:  # tiny image: repeat until large enough
            return pad_to(img, size)
    return img


@dataclass(frozen=True)
class SampleKey:
    """What a sampler hands to a dataset: the image index and the seed of its random choices."""

    index: int
    seed: int


class _FolderDataset(Dataset):
    """Shared retry-on-unreadable logic; subclasses implement `_load(index, rng)`."""

    files: list[Path]

    def __len__(self) -> int:
        return len(self.files)

    def _load(self, index: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def __getitem__(self, key: SampleKey) -> dict:
        rng = np.random.default_rng(key.seed)
        bad: list[str] = []
        for attempt in range(min(MAX_ATTEMPTS, len(self.files))):
            index = (key.index + attempt) % len(self.files)
            try:
                sample = self._load(index, rng)
            except (OSError, ValueError, SyntaxError) as exc:  # PIL raises all three for bad files
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                named = reason.startswith(f"{self.files[index]}: ")  # the reader's own line names the file once
                bad.append(reason if named else f"{self.files[index]}: {reason}")
                continue
            sample["bad"] = "\n".join(bad)
            sample["ok"] = True
            return sample
        return {**self._empty(), "bad": "\n".join(bad), "ok": False}

    def _empty(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError


class HRFolderDataset(_FolderDataset):
    """HR images for on-the-fly degradation: random `crop_size` crop (reflect-padded), flips.

    Args:
        root: folder searched recursively for png/jpg/jpeg/webp.
        crop_size: side of the returned square crop.
        use_hflip / use_rot: augmentations (rot = vertical flip and transpose, 8 orientations).
        meta_file: optional list of relative paths instead of a folder scan.

    Returns samples `{"gt": Tensor[3, crop, crop] in [0, 1]}`.
    """

    def __init__(
        self, root: str | Path, crop_size: int, use_hflip: bool = True, use_rot: bool = False,
        meta_file: str | Path | None = None,
    ) -> None:
        self.files = list_images(root, meta_file)
        self.crop_size = crop_size
        self.use_hflip, self.use_rot = use_hflip, use_rot

    def _load(self, index: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        img = pad_to(read_image(self.files[index]), self.crop_size)
        h, w = img.shape[:2]
        top = int(rng.integers(0, h - self.crop_size + 1))
        left = int(rng.integers(0, w - self.crop_size + 1))
        img = img[top : top + self.crop_size, left : left + self.crop_size]
        (img,) = augment([img], rng, self.use_hflip, self.use_rot)
        return {"gt": _to_tensor(img)}

    def _empty(self) -> dict[str, torch.Tensor]:
        return {"gt": torch.zeros(3, self.crop_size, self.crop_size)}


def match_lq(gt_files: list[Path], gt_root: Path, lq_root: Path) -> list[Path]:
    """The LQ file of each GT file: same relative path, any image extension."""
    lq = []
    for gt in gt_files:
        rel = gt.relative_to(gt_root)
        candidates = [lq_root / rel] + [(lq_root / rel).with_suffix(s) for s in IMAGE_SUFFIXES]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise DataError(f"no LQ image for {gt} under {lq_root} (expected {lq_root / rel})")
        lq.append(found)
    return lq


class PairedDataset(_FolderDataset):
    """LQ/GT pairs with the same relative names; aligned random crop (GT = LQ crop x scale), flips.

    Args:
        gt_root / lq_root: folders of GT and LQ images (LQ is `scale` times smaller).
        gt_size: GT crop side (a multiple of `scale`); 0 = whole images (validation).
        scale: size ratio GT / LQ.
        use_hflip / use_rot: augmentations applied identically to both.
        meta_file: optional list of GT paths relative to `gt_root`.

    Returns samples `{"lq": Tensor[3, h, w], "gt": Tensor[3, h*scale, w*scale]}`.
    """

    def __init__(
        self, gt_root: str | Path, lq_root: str | Path, gt_size: int, scale: int,
        use_hflip: bool = True, use_rot: bool = False, meta_file: str | Path | None = None,
    ) -> None:
        self.files = list_images(gt_root, meta_file)
        self.lq_files = match_lq(self.files, Path(gt_root), Path(lq_root))
        self.gt_size, self.scale = gt_size, scale
        self.use_hflip, self.use_rot = use_hflip, use_rot

    def _load(self, index: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        gt, lq = read_image(self.files[index]), read_image(self.lq_files[index])
        s = self.scale
        lh, lw = lq.shape[:2]
        if gt.shape[0] != lh * s or gt.shape[1] != lw * s:
            raise ValueError(f"GT is {gt.shape[1]}x{gt.shape[0]}, LQ {lw}x{lh}: not x{s}")
        if self.gt_size:
            ls = self.gt_size // s
            if lh < ls or lw < ls:
                raise ValueError(f"LQ {lw}x{lh} is smaller than the crop {ls}x{ls}")
            top, left = int(rng.integers(0, lh - ls + 1)), int(rng.integers(0, lw - ls + 1))
            lq = lq[top : top + ls, left : left + ls]
            gt = gt[top * s : (top + ls) * s, left * s : (left + ls) * s]
        gt, lq = augment([gt, lq], rng, self.use_hflip, self.use_rot)
        return {"gt": _to_tensor(gt), "lq": _to_tensor(lq)}

    def _empty(self) -> dict[str, torch.Tensor]:
        ls = self.gt_size // self.scale
        return {"gt": torch.zeros(3, self.gt_size, self.gt_size), "lq": torch.zeros(3, ls, ls)}


class ResumableSampler(Sampler):
    """Endless stream of `SampleKey`s: a seeded permutation per epoch, split across ranks.

    Position `start` (in samples of this rank) lets a resumed run continue exactly where the
    interrupted one stopped. Each rank takes every `world`-th entry of the shared permutation.
    """

    def __init__(self, n: int, seed: int, rank: int = 0, world: int = 1, start: int = 0) -> None:
        self.n, self.seed, self.rank, self.world, self.start = n, seed, rank, world, start
        self.per_rank = max(1, n // world)

    def _epoch(self, epoch: int) -> np.ndarray:
        perm = np.random.default_rng([self.seed, epoch]).permutation(self.n)
        if len(perm) < self.world:  # fewer images than ranks: repeat
            perm = np.resize(perm, self.world)
        return perm[self.rank :: self.world][: self.per_rank]

    def __iter__(self) -> Iterator[SampleKey]:
        epoch, offset = divmod(self.start, self.per_rank)
        while True:
            order = self._epoch(epoch)
            for pos in range(offset, len(order)):
                seed = int(np.random.SeedSequence([self.seed, epoch, self.rank, pos]).generate_state(1)[0])
                yield SampleKey(int(order[pos]), seed)
            epoch, offset = epoch + 1, 0


def collate(samples: list[dict]) -> dict:
    """Stack tensors; keep the unreadable-file reports as a list."""
    out: dict = {k: torch.stack([s[k] for s in samples]) for k in samples[0] if isinstance(samples[0][k], torch.Tensor)}
    out["bad"] = [line for s in samples for line in s["bad"].splitlines() if line]
    out["ok"] = all(s["ok"] for s in samples)
    return out


def make_loader(
    dataset: Dataset, batch_size: int, seed: int, rank: int, world: int, start_batch: int,
    num_workers: int, pin_memory: bool = False,
) -> Iterator[dict]:
    """An endless iterator of batches, starting at batch `start_batch` of this rank."""
    sampler = ResumableSampler(len(dataset), seed, rank, world, start=start_batch * batch_size)
    loader = DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers, collate_fn=collate,
        drop_last=True, pin_memory=pin_memory, persistent_workers=num_workers > 0,
        prefetch_factor=2 if num_workers > 0 else None,
    )
    return iter(loader)


class UnreadableCounter:
    """Counts distinct unreadable files and decides when there are too many."""

    def __init__(self, total_files: int, max_fraction: float) -> None:
        self.total, self.max_fraction = total_files, max_fraction
        self.bad: dict[str, str] = {}

    def add(self, batch: dict) -> list[str]:
        """Record a batch's reports; return the newly seen ones (for logging)."""
        new = []
        for line in batch["bad"]:
            path = line.split(": ", 1)[0]
            if path not in self.bad:
                self.bad[path] = line
                new.append(line)
        if not batch["ok"] or len(self.bad) > self.max_fraction * self.total:
            first = next(iter(self.bad.values()), "no readable image found")
            raise DataError(
                f"{len(self.bad)} of {self.total} training images could not be read "
                f"(limit data.max_unreadable={self.max_fraction}); first: {first}"
            )
        return new
