"""Memory bounds of `anonymize` and `probe` on large stores (docs/adapter.md, "Scale"); no imports, so
`--help` can show them.

Both stages hold a bounded number of motion clips whatever the store's size: `anonymize` reads and
anonymizes CHUNK_ROWS at a time and its privacy gate measures at most about GATE_MAX_CLIPS (a seeded
sample of whole people per split above that); `probe` fits its probes on at most about
PROBE_MAX_CLIPS motion clips chosen the same way. Both caps are above an HMDB51-sized store (60k motion
clips), which is measured whole. `train-adapter` streams groups of videos sized by
MEMORY_PER_LATENT_BYTE.
"""

CHUNK_ROWS = 32_768  # about 100 MB of float32 at D = 768, each way
GATE_MAX_CLIPS = 100_000
PROBE_MAX_CLIPS = 100_000

# `train-adapter` holds about this many bytes per byte of the float32 train/val latents it has in memory
# (the store's view, the training copy, the eraser's fit, the batches), so `--memory-gb` is divided by it.
# Measured peak RSS on the scale presets (docs/adapter.md, Scale): 3.34 GB for 0.32 GB of latents (hmdb,
# in memory), 5.95 GB for 0.59 GB (kinetics, 12 parts, in memory), 2.61 GB for groups of 0.2 GB (24 parts,
# streamed).
MEMORY_PER_LATENT_BYTE = 10
