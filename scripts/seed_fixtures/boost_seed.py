"""Write the BoostFormer seed's checkpoints and logits for tests/models/test_boost_original.py.

The checkpoints are made by the seed's own code (boostcampaitech4lv23cv3/
final-project-level3-cv-16, boostformer/modeling_segformer.py at the pinned commit
below), imported from a checkout of it; nothing of the seed is copied here. It runs in
the seed's environment (torch and transformers 4.48; the seed needs neither timm nor
torchvision), not in this project's, and CI never runs it: its output is committed.

    /work/seedenv/bin/python scripts/seed_fixtures/boost_seed.py --seed-repo SEED_GIT_DIR

``SEED_GIT_DIR`` is a clone (or bare mirror) of the seed; the pinned commit is extracted
into a temporary directory and imported from there. What it writes under ``--out``
(default tests/fixtures/seeds/boost):

- ``tiny/``: a narrow BoostFormer (widths 8-24, MiT's heads) as the seed saves it:
  ``model/`` (``save_pretrained``: config.json + model.safetensors) and
  ``state_dict.pth`` (``torch.save(model.state_dict())``);
- ``heads/``: another shape (three stages, the last at stride 1; other heads, MLP
  ratios, first patch size, classes) as ``save_pretrained(safe_serialization=False)``
  writes it (config.json + pytorch_model.bin): only its config.json says what it is;
- ``expected.safetensors`` in each: fixed uint8 images (an even and an odd size) and the
  seed model's logits on them (ImageNet-normalised, as ``pixel_values`` below);
- ``b2_layout.json.gz``: the seed's real B2 config.json and every key and shape of its
  state dict (no weights: 19.9M of them, 2.4M in the unused ``linear_fuse``).

Weights are at a realistic scale, not at their initialisation: Linear and convolution
weights with standard deviation 1/sqrt(fan_in) (queries and keys 4/sqrt(fan_in), so that
the attention logits q.k/sqrt(d) spread over the keys with a standard deviation of about
2.5), norm affines and biases perturbed, layer scales and the decoder's stage weights
drawn away from 1e-5 and 1, and BatchNorm running statistics measured on random batches
in training mode (then the model is in eval mode for the logits).

``--b2 DIR`` writes the same files for the seed's B2 configuration with 150 classes at
512x512 and 509x381 instead (about 180 MB, not committed); the parity test then reads it:

    SEGFORMER_LAB_BOOST_SEED_B2=DIR pytest -s tests/models/test_boost_original.py -k 512
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

SEED_COMMIT = "05d6eb1f72c2b341d993d1cdc303245f4c9adabb"
REPO = Path(__file__).resolve().parents[2]

TINY = dict(
    hidden_sizes=[8, 16, 20, 24],
    depths=[1, 2, 1, 1],
    num_attention_heads=[1, 2, 5, 8],  # MiT's: what a bare state dict is assumed to have
    mlp_ratios=[2, 2, 2, 2],
    decoder_hidden_size=16,
    labels=["sky", "tree", "road", "car", "person"],
    sizes=[(64, 64), (45, 67)],
)
HEADS = dict(  # three stages, the last at stride 1: its pooled attention sees 8x6 and 6x7 maps
    num_encoder_blocks=3,
    hidden_sizes=[8, 12, 16],
    depths=[1, 1, 2],
    num_attention_heads=[2, 3, 4],
    sr_ratios=[4, 2, 1],
    mlp_ratios=[2, 3, 2],
    patch_sizes=[5, 3, 3],
    strides=[4, 2, 1],
    decoder_hidden_size=16,
    labels=["background", "object", "edge"],
    sizes=[(64, 48), (45, 53)],
)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
B2 = dict(labels=[f"class_{i}" for i in range(150)], sizes=[(512, 512), (509, 381)])


def extract_seed(repo: Path, into: Path) -> None:
    """The seed's files at the pinned commit, from its git repository, into ``into``."""
    archive = subprocess.run(["git", "-C", str(repo), "archive", SEED_COMMIT], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)


def seed_model(settings: dict) -> nn.Module:
    """The seed's ``SegformerForSemanticSegmentation`` (its BoostFormer) for ``settings``."""
    from boostformer.configuration_segformer import SegformerConfig
    from boostformer.modeling_segformer import SegformerForSemanticSegmentation

    labels = settings["labels"]
    fields = {k: v for k, v in settings.items() if k not in ("labels", "sizes")}
    config = SegformerConfig(
        **fields, id2label=dict(enumerate(labels)), label2id={name: i for i, name in enumerate(labels)}
    )
    return SegformerForSemanticSegmentation(config)


@torch.no_grad()
def randomise(model: nn.Module, seed: int) -> None:
    """Weights at a realistic scale, BatchNorm statistics measured (see the docstring)."""
    g = torch.Generator().manual_seed(seed)

    def normal(t: torch.Tensor, mean: float, std: float) -> None:
        t.copy_(mean + std * torch.randn(t.shape, generator=g))

    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            gain = 4.0 if name.endswith((".query", ".key")) else 1.0
            normal(module.weight, 0.0, gain / module.weight[0].numel() ** 0.5)
            if module.bias is not None:
                normal(module.bias, 0.0, 0.1)
        elif isinstance(module, (nn.LayerNorm, nn.BatchNorm2d)):
            normal(module.weight, 1.0, 0.2)
            normal(module.bias, 0.0, 0.1)
    for name, p in model.named_parameters():
        if ".layer_scale_" in name:
            p.copy_(torch.empty(p.shape).uniform_(-0.2, 1.0, generator=g))
        elif name == "decode_head.weights":
            p.copy_(torch.empty(p.shape).uniform_(0.5, 1.5, generator=g))
    calibrate_batch_norms(model, g)


@torch.no_grad()
def calibrate_batch_norms(model: nn.Module, g: torch.Generator, batches: int = 4) -> None:
    """Running statistics as training leaves them: averaged over a few random batches
    in training mode, with stochastic depth off so the statistics are the eval path's."""
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average
    drop = {m: m.drop_prob for m in model.modules() if hasattr(m, "drop_prob")}
    for m in drop:
        m.drop_prob = 0.0
    model.train()
    for _ in range(batches):
        model(pixel_values=torch.randn(2, 3, 64, 64, generator=g))
    for m, p in drop.items():
        m.drop_prob = p
    for m in norms:
        m.momentum = 0.1
    model.eval()


def images(sizes, seed: int) -> dict[str, torch.Tensor]:
    """Fixed uint8 images (random pixels): committed exactly, and small."""
    g = torch.Generator().manual_seed(seed)
    return {f"image.{h}x{w}": torch.randint(0, 256, (1, 3, h, w), generator=g, dtype=torch.uint8) for h, w in sizes}


def pixel_values(image: torch.Tensor) -> torch.Tensor:
    """ImageNet normalisation, the expression the test repeats."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (image.float() / 255 - mean) / std


def attention_logit_scale(model: nn.Module, x: torch.Tensor) -> float:
    """The standard deviation of the attention logits q.k/sqrt(d), averaged over the
    attention blocks (above ~2 the softmax is far from uniform)."""
    scales = []

    def hook(module, args, output):
        hidden, height, width = args[:3]
        b, n, c = hidden.shape
        heads, d = module.num_attention_heads, module.attention_head_size
        q = module.query(hidden).view(b, n, heads, d).transpose(1, 2)
        pooled = module.pool(hidden.transpose(1, 2).reshape(b, c, height, width)).flatten(2).transpose(1, 2)
        k = module.key(module.act(module.norm(pooled))).view(b, -1, heads, d).transpose(1, 2)
        scales.append((q @ k.transpose(-1, -2) / d**0.5).std(-1).mean().item())

    handles = [m.register_forward_hook(hook) for n, m in model.named_modules() if n.endswith("attention.self")]
    with torch.no_grad():
        model(pixel_values=x)
    for h in handles:
        h.remove()
    return sum(scales) / len(scales)


def write_case(settings: dict, out: Path, seed: int, forms: tuple[str, ...]) -> None:
    torch.manual_seed(seed)
    model = seed_model(settings)
    randomise(model, seed)
    out.mkdir(parents=True, exist_ok=True)
    if "model" in forms:
        model.save_pretrained(out / "model")
    if "model_bin" in forms:
        model.save_pretrained(out / "model_bin", safe_serialization=False)
    if "state_dict" in forms:
        torch.save(model.state_dict(), out / "state_dict.pth")
    expected = images(settings["sizes"], seed + 1)
    with torch.no_grad():
        for name, image in list(expected.items()):
            expected[name.replace("image.", "logits.")] = model(pixel_values=pixel_values(image)).logits.contiguous()
    save_file(expected, str(out / "expected.safetensors"))
    logits = [v for k, v in expected.items() if k.startswith("logits.")]
    scale = attention_logit_scale(model, pixel_values(next(iter(expected.values()))))
    print(f"{out}: attention logits' std {scale:.1f}, logits |max| {max(v.abs().max().item() for v in logits):.2f}")


def write_b2_layout(path: Path) -> None:
    """The seed's B2 (its default config, ADE20K's 150 classes): config.json and every
    key and shape of its state dict, without the weights."""
    model = seed_model(B2)
    with tempfile.TemporaryDirectory() as tmp:
        model.config.save_pretrained(tmp)
        config = json.loads((Path(tmp) / "config.json").read_text())
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    text = json.dumps({"config": config, "shapes": shapes}, separators=(",", ":")) + "\n"
    path.write_bytes(gzip.compress(text.encode(), mtime=0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed-repo", type=Path, required=True, help="the seed's git repository (or bare mirror)")
    parser.add_argument("--out", type=Path, default=REPO / "tests/fixtures/seeds/boost")
    parser.add_argument("--b2", type=Path, help="write the seed's B2 at 512x512 here instead (not committed)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as checkout:
        extract_seed(args.seed_repo, Path(checkout))
        sys.path.insert(0, checkout)
        if args.b2:
            write_case(B2, args.b2, seed=2, forms=("model", "state_dict"))
            return
        write_case(TINY, args.out / "tiny", seed=0, forms=("model", "state_dict"))
        write_case(HEADS, args.out / "heads", seed=1, forms=("model_bin",))
        write_b2_layout(args.out / "b2_layout.json.gz")


if __name__ == "__main__":
    main()
