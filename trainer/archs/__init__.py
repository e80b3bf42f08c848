"""Generator and discriminator architectures with the official Real-ESRGAN state_dict keys."""
