"""Real-ESRGAN's official `inference_realesrgan.py` for realesr-animevideov3, restated as one process.

`python bench/official_child.py WEIGHTS.pth IN.png OUT.png` does what
`python inference_realesrgan.py -n realesr-animevideov3 -i IN.png -s 4 --fp32` does on a CPU
machine (the script asks for half precision only where CUDA is available), in the same order:
import cv2 and torch, build SRVGGNetCompact(64 feat, 16 convs, x4, PReLU), `torch.load` the
`.pth` and load `params_ema`, read with `cv2.imread(IMREAD_UNCHANGED)`, RealESRGANer's enhance
(float32 / 255, BGR->RGB, NCHW, pre-pad = the script's `--pre_pad` default 0, tile 0, the net
under no_grad, clamp, RGB->BGR, `* 255` round to uint8; outscale 4 = the net's scale, so no
resize), then `cv2.imwrite` at OpenCV's default PNG level. The architecture is the project's
own (the same state_dict keys as upstream); basicsr and realesrgan are not importable here, so
their import time (basicsr pulls torchvision and its registries) is NOT counted: the official
side measured here is a lower bound of the real script's time.
"""

from __future__ import annotations

import sys


def main(weights: str, src: str, dst: str) -> None:
    import cv2
    import numpy as np
    import torch

    from realesr_portable.archs.srvgg.module import SRVGGNetCompact

    model = SRVGGNetCompact(num_in_ch=3, num_out_ch=3, num_feat=64, num_conv=16, upscale=4, act_type="prelu")
    loadnet = torch.load(weights, map_location=torch.device("cpu"), weights_only=True)
    model.load_state_dict(loadnet["params_ema" if "params_ema" in loadnet else "params"], strict=True)
    model.eval()

    img = cv2.imread(src, cv2.IMREAD_UNCHANGED)
    img = img.astype(np.float32)
    max_range = 65535 if np.max(img) > 256 else 255
    img = cv2.cvtColor(img / max_range, cv2.COLOR_BGR2RGB)
    with torch.no_grad():
        x = torch.from_numpy(np.transpose(img, (2, 0, 1))).float().unsqueeze(0)
        out = model(x)
        out = out.data.squeeze().float().cpu().clamp_(0, 1).numpy()
    out = np.transpose(out[[2, 1, 0], :, :], (1, 2, 0))
    cv2.imwrite(dst, (out * 255.0).round().astype(np.uint8))


if __name__ == "__main__":
    main(*sys.argv[1:4])
