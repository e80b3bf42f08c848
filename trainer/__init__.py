"""Real-ESRNet / Real-ESRGAN training: architectures, degradations, losses (needs the `train` extra)."""
