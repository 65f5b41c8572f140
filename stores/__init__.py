"""Bytes: manifests, the Zarr latent cache and Parquet shards. numpy in, numpy out; no torch."""
