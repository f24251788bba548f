"""RoPE families against timm on the same weights: forward pass of EVA-02 Ti/14 and DINOv3 S/16, and
`attend --query cls --layer all` at 1024 px on DINOv3 S/16 with its peak memory.

Random scrambled weights (no hub access), saved as safetensors and loaded by vitcli; timm runs its
default fused path. Ratios are timm time / vitcli time (≥ 1: vitcli as fast or faster).
"""

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import SAMPLES, best_of, machine, peak_rss_mb, vitcli_command  # noqa: E402

MODELS = (("eva02_tiny_patch14_224", {}, 224, 3), ("vit_small_patch16_dinov3", {"num_classes": 0}, 224, 6))


def main() -> None:
    import timm
    import torch
    from safetensors.torch import save_file

    from tests.checkpoints.parity import scramble
    from vitcli.checkpoints.load import build_model_from_checkpoint
    from vitcli.core.capture import Capture

    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        for name, kw, size, heads in MODELS:
            peer = scramble(timm.create_model(name, pretrained=False, **kw)).eval()
            path = Path(tmp) / f"{name}.safetensors"
            save_file(peer.state_dict(), path)
            core = build_model_from_checkpoint(str(path), heads=heads)
            x = torch.randn(8, 3, size, size)

            def timed(f) -> float:
                start = time.perf_counter()
                with torch.no_grad():
                    f()
                return time.perf_counter() - start

            with torch.no_grad():
                ref = peer.forward_features(x)
                got = core(x, Capture(inputs=False)).output
            t_timm, t_core = best_of(5, lambda: timed(lambda: peer.forward_features(x)),
                                     lambda: timed(lambda: core(x, Capture(inputs=False))))
            print(f"{name}: batch 8 at {size}px  timm {t_timm * 1e3:.0f} ms  vitcli {t_core * 1e3:.0f} ms  "
                  f"ratio {t_timm / t_core:.2f}x  (max |diff| {(ref - got).abs().max():.1e})")
            if "dinov3" in name:
                image = str(SAMPLES / "astronaut.jpg")
                cmd = [*vitcli_command(), "attend", image, "--weights", str(path), "--heads", "6", "--size", "1024",
                       "--query", "cls", "--layer", "all", "-q", "-o", str(Path(tmp) / "cls.npy")]
                base = peak_rss_mb([*vitcli_command(), "info", "--weights", str(path), "--heads", "6", "-q"])
                peak = peak_rss_mb(cmd)
                print(f"attend --query cls --layer all at 1024 px, DINOv3 S/16 (4101 tokens): peak RSS {peak:.0f} MB "
                      f"(info on the same weights: {base:.0f} MB)")


if __name__ == "__main__":
    main()
