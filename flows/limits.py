"""Memory bounds of `anonymize` and `probe` on large stores (docs/adapter.md, "Scale"); no imports, so
`--help` can show them.

Both stages hold a bounded number of motion clips whatever the store's size: `anonymize` reads and
anonymizes CHUNK_ROWS at a time and its privacy gate measures at most about GATE_MAX_CLIPS (a seeded
sample of whole people per split above that); `probe` fits its probes on at most about
PROBE_MAX_CLIPS motion clips chosen the same way. Both caps are above an HMDB51-sized store (60k motion
clips), which is measured whole.
"""

CHUNK_ROWS = 32_768  # about 100 MB of float32 at D = 768, each way
GATE_MAX_CLIPS = 100_000
PROBE_MAX_CLIPS = 100_000
