"""The torch engine behind `--backend torch`: the same model files run by the project's own
torch architectures (weights imported from the ncnn `.param/.bin`), on CUDA/ROCm or the CPU.

Imports torch, `archs/` and `convert/`; the runtime reaches it only through importlib
(`realesr_portable.run.backend`), so `--help` and ncnn runs never import torch.
"""
