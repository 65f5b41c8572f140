"""Tests of the storage layer: manifests and the latent cache."""
