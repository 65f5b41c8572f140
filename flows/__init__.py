"""Stage orchestration: the only place where `pipeline` (compute) and `stores` (bytes) meet."""

import os

# OpenMP threads that finish a parallel region spin, waiting for the next one, before they sleep. On a
# machine whose cores are also busy (decode workers, other jobs), a spinning thread takes the core that
# the thread the region waits for needs: measured on a loaded 2-core machine, the tiny encoder ran at
# 85-94 clips/s on 2 torch threads against 217-257 on one; with passive waiting 2 threads ran at
# 222-232 (docs/extract.md). libgomp reads this when torch is first imported, so it is set here, before
# any flows module imports torch; a value the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
