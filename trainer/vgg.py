"""VGG19 feature extractor for the perceptual loss, without torchvision.

The layers and parameter names are torchvision's (`features.N.weight`), so the standard
ImageNet file `vgg19-dcbb9e9d.pth` loads as is. Users with internet get it through
`torch.hub.load_state_dict_from_url` (downloaded once, cached, hash-checked); offline users pass
a local copy. Features are taken *before* the ReLU (ESRGAN's pre-activation trick), so the
ReLUs here are not in-place.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..convert.weights_io import TorchFileError, read_torch_file
from ..errors import UserError

#: torchvision's URL of the ImageNet VGG19 weights (the file name carries its sha256 prefix).
VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
#: Channels per conv block of VGG19 ('M' = max-pool), torchvision's configuration "E".
VGG19_CFG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M",
)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VGGWeightsError(UserError, ValueError):
    """The VGG19 weight file is missing, unreadable, or not a VGG19 state_dict."""


def layer_indices() -> dict[str, int]:
    """Map `conv{block}_{n}` / `relu{block}_{n}` / `pool{block}` to indices in `features`."""
    names: dict[str, int] = {}
    block, n, idx = 1, 1, 0
    for item in VGG19_CFG:
        if item == "M":
            names[f"pool{block}"] = idx
            idx += 1
            block, n = block + 1, 1
        else:
            names[f"conv{block}_{n}"] = idx
            names[f"relu{block}_{n}"] = idx + 1
            idx += 2
            n += 1
    return names


def build_features(upto: int) -> nn.Sequential:
    """torchvision's `vgg19().features` truncated after index `upto` (inclusive)."""
    layers: list[nn.Module] = []
    in_ch = 3
    for item in VGG19_CFG:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(in_ch, int(item), 3, padding=1), nn.ReLU(inplace=False)]
            in_ch = int(item)
    return nn.Sequential(*layers[: upto + 1])


def load_vgg19_state(path: str | Path | None = None) -> dict[str, torch.Tensor]:
    """The VGG19 state_dict from `path`, or from torch.hub's cache (downloading it once)."""
    if path:
        path = Path(path)
        if not path.is_file():
            raise VGGWeightsError(f"VGG19 weight file {path} does not exist")
        try:
            state = read_torch_file(path)
        except TorchFileError as exc:
            raise VGGWeightsError(f"cannot read VGG19 weights {path}: {exc.reason}") from None
    else:
        try:
            state = torch.hub.load_state_dict_from_url(
                VGG19_URL, map_location="cpu", check_hash=True, progress=False, weights_only=True
            )
        except Exception as exc:  # no network, proxy, hash mismatch ...
            raise VGGWeightsError(
                f"cannot fetch VGG19 weights from {VGG19_URL} ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}); download it and pass "
                "--vgg-weights PATH (or set path.vgg_weights)"
            ) from None
    if not isinstance(state, dict):
        raise VGGWeightsError("VGG19 weight file does not hold a state_dict")
    return state


class VGGFeatureExtractor(nn.Module):
    """Frozen VGG19 returning pre-ReLU features of the named conv layers.

    Args:
        layers: names such as `conv1_2`, `conv5_4` (any conv/relu/pool name of VGG19).
        state_dict: torchvision-layout VGG19 weights (see `load_vgg19_state`).
        use_input_norm: normalise [0, 1] input with ImageNet mean/std (default True).
        range_norm: map input from [-1, 1] to [0, 1] first (default False).
    """

    def __init__(
        self, layers: list[str], state_dict: dict[str, torch.Tensor], use_input_norm: bool = True,
        range_norm: bool = False,
    ) -> None:
        super().__init__()
        names = layer_indices()
        unknown = [name for name in layers if name not in names]
        if unknown or not layers:
            raise ValueError(f"unknown VGG19 layer names {unknown or layers}; valid: conv1_1 .. conv5_4")
        self.layers = list(layers)
        self.index = {name: names[name] for name in layers}
        self.features = build_features(max(self.index.values()))
        wanted = {k: v for k, v in state_dict.items() if k.startswith("features.")}
        own = self.features.state_dict()
        missing = [f"features.{k}" for k in own if f"features.{k}" not in wanted]
        if missing:
            raise VGGWeightsError(f"VGG19 weights lack {missing[0]} (and {len(missing) - 1} more keys)")
        for key, tensor in own.items():
            src = wanted[f"features.{key}"]
            if src.shape != tensor.shape:
                raise VGGWeightsError(f"VGG19 weights: features.{key} has shape {tuple(src.shape)}, need {tuple(tensor.shape)}")
        self.features.load_state_dict({k: wanted[f"features.{k}"].float() for k in own})
        self.use_input_norm, self.range_norm = use_input_norm, range_norm
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGGFeatureExtractor:
        """Always stays in eval mode (a frozen loss network)."""
        return super().train(False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """x: (B, 3, H, W) in [0, 1] -> {layer name: features}."""
        if self.range_norm:
            x = (x + 1) / 2
        if self.use_input_norm:
            x = (x - self.mean) / self.std
        wanted = {idx: name for name, idx in self.index.items()}
        out: dict[str, torch.Tensor] = {}
        for idx, layer in enumerate(self.features):
            x = layer(x)
            if idx in wanted:
                out[wanted[idx]] = x
        return out


def random_vgg19_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A randomly initialised VGG19 `features` state_dict in torchvision's layout (for tests/offline smoke runs)."""
    gen = torch.Generator().manual_seed(seed)
    feats = build_features(len(layer_indices()) - 1)
    state = {}
    for key, tensor in feats.state_dict().items():
        if key.endswith("weight"):
            fan_in = tensor[0].numel()
            state[f"features.{key}"] = torch.randn(tensor.shape, generator=gen) * (2.0 / fan_in) ** 0.5
        else:
            state[f"features.{key}"] = torch.zeros(tensor.shape)
    return state
