"""A label-free diagnostic: how much of a video's raw static look can a FRESH kernel CCA still find in
an embedding set's motion clips, on videos it was not fitted on? (issue 24)

For the raw embeddings and each adapter given: the motion clips of the train and val videos of one
action (what the adapter's erasers are fitted on), each paired with its video's look (the mean of its
raw static clips). A kernel CCA (`pipeline.adapter.kernel.heldout_dependence`: random Fourier features
of both sides, 32 pairs, ridge 0.1, within actions, features drawn from seed 5) is fitted on the train
videos' clips and scored on the val videos' clips: the mean squared correlation of its pairs. The same
with the looks of the videos shuffled is the floor a statistic of no dependence reads. Test videos are
never read, and no private label is.

    python benchmarks/kernel_dependence.py --store bench-out/dev/latents.zarr \\
        --adapter bench-out/dev/seeds/default-seed0 --adapter bench-out/dev/seeds/kerase32-seed0
"""

from __future__ import annotations

import argparse

import numpy as np

from flows.train_adapter import adapter_data
from flows.views import binding
from pipeline.adapter import load_adapter
from pipeline.adapter.kernel import heldout_dependence
from pipeline.adapter.model import anonymize_array
from pipeline.probes.inputs import mean_by_owner
from stores.latent_cache import LatentCache


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--store", required=True, help="latent cache with static clips and action labels")
    parser.add_argument("--adapter", action="append", default=[], help="adapter folder(s)")
    args = parser.parse_args()
    cache = LatentCache.open(args.store)
    data, _ = adapter_data(cache.read())
    look = mean_by_owner(data.static, data.static_video, data.num_videos)
    if data.action is None:
        parser.error(f"{args.store}: needs action labels (the statistic is taken within actions)")
    video_action = np.full(data.num_videos, -1)
    labelled = data.action >= 0
    video_action[data.video[labelled]] = data.action[labelled]
    group = video_action[data.video]
    keep = np.flatnonzero(group >= 0)
    fit_rows = np.flatnonzero(data.split[data.video[keep]] == "train")
    shuffled = np.random.default_rng(1).permutation(data.num_videos)
    sets = {"raw": data.motion}
    for folder in args.adapter:
        model, _, _ = load_adapter(folder, **binding(cache.attrs))
        sets[folder] = anonymize_array(model, data.motion)
    print(f"{'set':52s} {'held-out dependence':>20s} {'shuffled looks':>15s}")
    for name, z in sets.items():
        real, floor = (
            heldout_dependence(
                z[keep], look[owner], group[keep], fit_rows, dims=32, features=512, reg=0.1, seed=5
            )
            for owner in (data.video[keep], shuffled[data.video[keep]])
        )
        print(f"{name:52s} {real:20.3f} {floor:15.3f}")


if __name__ == "__main__":
    main()
