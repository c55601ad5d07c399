"""Fixtures for tests/models/test_rope_original.py, made by the SegFormer-with-RoPE seed's own code.

Runs in the seed's environment (transformers 4.48, which the seed pins), never in ours,
and imports the seed from a checkout of koutyuke/SegFormer-with-RoPE at commit c2d17b7
(nothing of the seed is copied into this repository). For each variant (axial, mixed) it
builds a small seed model, gives every weight a realistic, non-initial value (attention
sharp enough that the RoPE variants differ from each other and from no RoPE; LayerNorm
and BatchNorm parameters and BatchNorm statistics off their initial values), and writes

    OUT/<variant>/safetensors/     save_pretrained(..., safe_serialization=True)
    OUT/<variant>/bin/             save_pretrained(..., safe_serialization=False)
    OUT/<variant>/state_dict.pth   torch.save(model.state_dict())
    OUT/<variant>/logits.safetensors  "image" (uint8 [1, 3, S, S]) and the seed model's "logits" for
                                   pixel_values = (image - 128) / 32

    git -C <mirror> worktree add /tmp/rope-seed c2d17b7     # or: git archive c2d17b7 | tar -x -C ...
    <seed venv>/bin/pip install icecream                      # the seed's model.py imports it
    <seed venv>/bin/python scripts/seed_fixtures/rope_seed.py --seed /tmp/rope-seed --out tests/fixtures/seeds/rope
    <seed venv>/bin/python scripts/seed_fixtures/rope_seed.py --seed /tmp/rope-seed --out /tmp/rope512 --b0 --size 512

``--b0`` builds the seed's own B0 configuration (its training setting; about 15 MB per form).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch
from torch import nn

PINNED_COMMIT = "c2d17b7"
# Two stages, narrow, MiT's head counts (1, 2), both stages reduced (sr 4 and 2) so the
# pooled phasors matter; 64 px input: 16x16 and 8x8 grids.
SMALL = dict(
    num_encoder_blocks=2,
    hidden_sizes=[8, 16],
    depths=[2, 1],
    num_attention_heads=[1, 2],
    sr_ratios=[4, 2],
    patch_sizes=[7, 3],
    strides=[4, 2],
    mlp_ratios=[2, 2],
    decoder_hidden_size=16,
    num_labels=5,
)
B0 = dict(num_labels=150)  # transformers' SegformerConfig defaults are MiT-B0's
QK_GAIN = 2.0  # query/key weights this many times the fan-in scale: attention scores of a few units


def randomise(model: nn.Module, generator: torch.Generator) -> None:
    """Every parameter and BatchNorm statistic at a realistic, non-initial value."""

    def normal(t: torch.Tensor, std: float, mean: float = 0.0) -> None:
        t.copy_(torch.randn(t.shape, generator=generator) * std + mean)

    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                fan_in = module.weight[0].numel()
                gain = QK_GAIN if name.endswith((".query", ".key")) else 1.0
                normal(module.weight, gain / math.sqrt(fan_in))
                if module.bias is not None:
                    normal(module.bias, 0.1)
            elif isinstance(module, (nn.LayerNorm, nn.BatchNorm2d)):
                normal(module.weight, 0.2, 1.0)
                normal(module.bias, 0.1)
                if isinstance(module, nn.BatchNorm2d):
                    normal(module.running_mean, 0.2)
                    module.running_var.copy_(torch.rand(module.running_var.shape, generator=generator) * 1.5 + 0.5)
                    module.num_batches_tracked.fill_(1000)
        for name, p in model.named_parameters():
            if ".freqs." in name:  # mixed frequencies: rope-vit's initialisation, perturbed as by training
                p.mul_(1 + 0.3 * torch.randn(p.shape, generator=generator))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=Path, required=True, help=f"checkout of the seed at {PINNED_COMMIT}")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--size", type=int, default=64, help="image_size of the seed's config and of the input")
    parser.add_argument("--b0", action="store_true", help="the seed's B0 configuration instead of the small one")
    args = parser.parse_args()
    sys.path.insert(0, str(args.seed / "src"))
    from safetensors.torch import save_file
    from segformer_with_rope.config import SegformerWithRoPEConfig
    from segformer_with_rope.model import SegformerWithRoPEForSemanticSegmentation

    for variant in ("axial", "mixed"):
        generator = torch.Generator().manual_seed(0 if variant == "axial" else 1)
        torch.manual_seed(0)  # the seed's initialisation of the mixed frequencies
        config = SegformerWithRoPEConfig(
            rope_theta=100.0, image_size=args.size, rope_mixed=variant == "mixed", **(B0 if args.b0 else SMALL)
        )
        model = SegformerWithRoPEForSemanticSegmentation(config)
        randomise(model, generator)
        model.eval()
        out = args.out / variant
        model.save_pretrained(out / "safetensors", safe_serialization=True)
        model.save_pretrained(out / "bin", safe_serialization=False)
        torch.save(model.state_dict(), out / "state_dict.pth")
        image = torch.randint(0, 256, (1, 3, args.size, args.size), generator=generator, dtype=torch.uint8)
        with torch.no_grad():
            logits = model(pixel_values=(image.float() - 128) / 32).logits
        save_file({"image": image, "logits": logits.contiguous()}, str(out / "logits.safetensors"))
        print(f"{out}: logits {tuple(logits.shape)}, std {logits.std():.3f}")


if __name__ == "__main__":
    main()
