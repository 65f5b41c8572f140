"""A second encoder for the adapter's second benchmark: one the project trains itself, saved as
TorchScript, so that a recipe chosen with the shipped `tiny` encoder can be checked on features it
never saw.

It pretrains the tiny architecture again (`flows.pretrain_encoder`: the same label-free objective, never
a private attribute) from another seed — another pretraining population of people and scenes, another
initialisation — and for fewer epochs (`--epochs`, default 4 against the shipped 10), then traces it to
TorchScript and loads it through `torchscript:FILE` as any user's encoder would be. A seeded random
network would be cheaper, but random 3-D CNN features give chance-level actions (shared design notes;
measured again here: a random two-layer tubelet CNN's co-trained action head read 0.09–0.16 on the val
videos at chance 0.14), so they cannot show whether a recipe keeps utility.

Same seed and epochs, same bytes (training runs on one thread). About 6 minutes on 2 cores:

    python benchmarks/second_encoder.py --out bench-out/second/encoder.pt --workdir bench-out/second/pretrain
    aam-pipeline synth bench-out/second/data --preset demo --seed 2
    aam-pipeline extract --manifest bench-out/second/data/manifest.parquet \\
        --encoder torchscript:bench-out/second/encoder.pt --crop 96 --out bench-out/second/latents.zarr
    python benchmarks/adapter_seeds.py --store bench-out/second/latents.zarr --seeds 0,1,2,3,4 \\
        --attackers full --variant default
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import torch

from pipeline.encoders.tiny import TINY_CONFIG, load_tiny_weights


def trace_tiny(weights: Path, out: Path) -> Path:
    """The tiny encoder of `weights` (and its .json) traced to a TorchScript file at `out`."""
    model, _ = load_tiny_weights(weights, weights.with_suffix(".json"))
    frames, crop = int(TINY_CONFIG["frames_per_clip"]), int(TINY_CONFIG["crop"])
    out.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is the contract (design §3.4)
        torch.jit.trace(model.eval(), torch.zeros(1, 3, frames, crop, crop)).save(str(out))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="TorchScript file to write")
    parser.add_argument("--workdir", type=Path, required=True, help="pretraining videos and weights go here")
    parser.add_argument("--seed", type=int, default=1, help="pretraining seed (the shipped encoder's is 0)")
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    if args.seed == 0:
        parser.error("--seed 0 is the shipped encoder's pretraining; a second encoder needs another")
    from flows.pretrain_encoder import pretrain_encoder
    from pipeline.encoders.torchscript import load_torchscript

    weights = args.workdir / f"tiny-seed{args.seed}.safetensors"
    if not weights.exists():
        pretrain_encoder(args.workdir, seed=args.seed, epochs=args.epochs, weights=weights)
    path = trace_tiny(weights, args.out)
    crop = int(TINY_CONFIG["crop"])
    encoder = load_torchscript(path, frames_per_clip=int(TINY_CONFIG["frames_per_clip"]), crop=crop)
    print(f"{path}: D={encoder.dim}, crop {crop}, state-dict sha256 {encoder.weights_sha256[:16]}…")


if __name__ == "__main__":
    main()
