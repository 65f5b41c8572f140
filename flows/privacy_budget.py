"""The privacy gate's default budget (docs/adapter.md, "The privacy gate"); no imports, so `--help` can
show it.

No attacker of the gate recovers any private attribute from the published motion clips more than a
quarter of the way from chance to perfect (cMAP), and the adapter removes at least half of the raw
above-chance leakage of every attribute: the paper's adapters remove 45-58% on VISPR, ours remove more
on the demo benchmark, so a publish below half is worse than the method's own reference.
"""

DEFAULT_MAX_LEAKAGE = 0.25
DEFAULT_MIN_REDUCTION = 0.5
