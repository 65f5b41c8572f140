"""Stage orchestration: the only place where `pipeline` (compute) and `stores` (bytes) meet."""
