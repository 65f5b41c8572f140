"""The attacker panel against scikit-learn defaults on a store's raw embeddings (issue 22).

For each private attribute, on motion and static clips: cMAP of every attacker of the panel and of
scikit-learn's ``LogisticRegression()`` and ``MLPClassifier()`` (defaults, on standardised features,
fitted on train + val clips, test videos scored by their clips' mean probabilities); the panel's worst
must read at least as much as either default. Prints seconds per attacker.

    .venv/bin/python benchmarks/attacker_panel.py --store /tmp/demo0/latents.zarr --panel full
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from flows.views import labels_of, motion_clips, static_clips
from pipeline.probes.attackers import panel_names
from pipeline.probes.config import LeakageConfig
from pipeline.probes.inputs import Clips, encode_labels, mean_by_owner
from pipeline.probes.leakage import attack
from pipeline.probes.metrics import cmap
from stores.latent_cache import LatentCache


def sklearn_default(
    clips: Clips, labels: Mapping[str, object], splits: Mapping[str, str], which: str
) -> float:
    """cMAP over test videos of scikit-learn's default ``which`` (sk_logreg, sk_mlp) on train + val clips."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler

    have = clips.rows_by_video
    train = sorted(v for v, s in splits.items() if s in ("train", "val") and v in have and v in labels)
    test = sorted(v for v, s in splits.items() if s == "test" and v in have and v in labels)
    classes = sorted({str(labels[v]) for v in [*train, *test]})
    rows = clips.rows(train)
    y = encode_labels([labels[v] for v in clips.video_id[rows]], classes)
    scaler = StandardScaler().fit(clips.emb[rows])
    model: Any = LogisticRegression() if which == "sk_logreg" else MLPClassifier(random_state=0)
    model.fit(scaler.transform(clips.emb[rows]), y)
    test_rows = clips.rows(test)
    proba = np.zeros((len(test_rows), len(classes)))
    proba[:, model.classes_] = model.predict_proba(scaler.transform(clips.emb[test_rows]))
    owner = np.repeat(np.arange(len(test)), [len(have[v]) for v in test])
    proba = mean_by_owner(proba, owner, len(test))
    truth = np.array([str(labels[v]) for v in test])
    return cmap(truth, proba, classes)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--store", required=True)
    parser.add_argument("--panel", choices=("fast", "full"), default="full")
    parser.add_argument("--views", default="motion,static")
    args = parser.parse_args()
    view = LatentCache.open(args.store).read()
    labels = labels_of(view.videos)
    cfg = LeakageConfig(panel=args.panel)
    out: dict[str, Any] = {}
    for kind in args.views.split(","):
        clips = motion_clips(view, view.motion) if kind == "motion" else static_clips(view, view.static)
        for name, values in labels.attributes.items():
            row: dict[str, tuple[float, float]] = {}
            for attacker in panel_names(cfg):
                start = time.perf_counter()
                r = attack(
                    clips, values, labels.splits, attacker, attribute=name, cfg=cfg, people=labels.identity
                )
                row[attacker] = (round(r.cmap, 4), round(time.perf_counter() - start, 1))
            for which in ("sk_logreg", "sk_mlp"):
                start = time.perf_counter()
                c = sklearn_default(clips, values, labels.splits, which)
                row[which] = (round(c, 4), round(time.perf_counter() - start, 1))
            panel_worst = max(v[0] for k, v in row.items() if not k.startswith("sk_"))
            sk_best = max(row["sk_logreg"][0], row["sk_mlp"][0])
            verdict = "ok" if panel_worst >= sk_best else "BELOW"
            print(kind, name, json.dumps(row), f"panel {panel_worst:.4f} vs sklearn {sk_best:.4f} {verdict}")
            out[f"{kind}/{name}"] = row
    print(json.dumps(out))


if __name__ == "__main__":
    main()
