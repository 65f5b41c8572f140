"""Compute: synthetic data, video decoding, transforms, encoders, adapter, losses, probes, metrics."""
