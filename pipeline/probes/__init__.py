"""Probes and metrics: what embeddings kept (actions, temporal detection, anomaly) and what they leak
(private attributes, identity, bias). Numpy in, small frozen dataclasses of metrics out.

Every probe takes a ``inputs.Clips`` (embeddings + where each clip sits) and ``{video_id: value}``
mappings; its settings come from ``config`` (one frozen ``ProbeConfig``, seeds included):
``action.probe_action``, ``leakage.probe_leakage``, ``reid.probe_reid``, ``temporal.probe_temporal``,
``anomaly.probe_anomaly``, ``bias.probe_bias``. ``metrics`` holds the metrics (numpy only), ``fit`` the
deterministic classifier fitting, ``synthetic`` embeddings with planted signals. Import the modules you
need: ``metrics`` and ``config`` do not import torch or faiss.
"""
