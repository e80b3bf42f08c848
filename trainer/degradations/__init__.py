"""The high-order degradation pipeline of Real-ESRGAN: seeded, batched, on any device."""
