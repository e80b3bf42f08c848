"""PyTorch <-> ncnn conversion for Real-ESRGAN-family generators (needs the `convert` extra)."""
