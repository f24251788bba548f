"""Forward pass of SigLIP B/16 and BEiT B/16 (issue 13): vitcli's encoder against timm, same weights.

Each timm model is built with random weights (`pretrained=False`), saved as safetensors and loaded
by vitcli, so both run the very same numbers; the same (B, 3, 224, 224) tensor goes through timm's
`forward_features` + `forward_head(pre_logits=True)` (SigLIP: the attention-pool probe; BEiT: the
patch mean with fc_norm and the relative position bias in every block) and through vitcli's
`model(x, Capture(inputs=False, final="pooled"))`, under `torch.inference_mode()`, interleaved,
best of N. timm runs its default fused attention (SDPA), vitcli its fast path. The ratio is
vitcli ÷ timm speed (> 1: vitcli faster). Usage:
    python benchmarks/bench_modern_forward.py [--batch 8] [--repeats 5]
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import best_of, machine, timed  # noqa: E402

MODELS = {"vit_base_patch16_siglip_224": {"heads": 12}, "beit_base_patch16_224": {"heads": 12}}


def one(name: str, batch: int, repeats: int, folder: Path) -> dict:
    import timm
    import torch
    from safetensors.torch import save_file

    from vitcli.checkpoints.load import build_model_from_checkpoint, load_checkpoint
    from vitcli.core.capture import Capture

    peer = timm.create_model(name, pretrained=False, num_classes=0).eval()
    path = folder / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in peer.state_dict().items()}, str(path))
    ours = build_model_from_checkpoint(load_checkpoint(str(path), **MODELS[name])).eval()
    x = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(0))

    def peer_run() -> torch.Tensor:
        return peer.forward_head(peer.forward_features(x), pre_logits=True)

    def ours_run() -> torch.Tensor:
        return ours(x, Capture(inputs=False, final="pooled")).pooled

    with torch.inference_mode():
        gap = (peer_run() - ours_run()).abs().max().item()

    timed(peer_run)(), timed(ours_run)()  # warm-up
    t_peer, t_ours = best_of(repeats, timed(peer_run), timed(ours_run))
    return {"model": name, "batch": batch, "timm_s": round(t_peer, 4), "vitcli_s": round(t_ours, 4),
            "ratio": round(t_peer / t_ours, 3), "max_abs_diff_pooled": gap}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        for name in MODELS:
            print(json.dumps(one(name, args.batch, args.repeats, Path(tmp))))


if __name__ == "__main__":
    main()
