"""Benchmark: `vitcli info --weights` on a ViT-B/16 safetensors, an HF ViT folder and a ViT-g/14 safetensors,
against `python -c "import torch"`, in one run (fresh processes, interleaved, the order reversed every other round).

Describing a checkpoint reads its safetensors header (a few kB of JSON) and config files, not its
values, and imports no torch. Goals (issue 26): ≤ 0.5 s for ViT-B and the HF folder, ≤ 1 s for ViT-g,
peak memory under 150 MB. The ViT-B file holds timm's random init (330 MB); the HF folder is transformers'
`save_pretrained` of a ViTModel; the ViT-g file (timm vit_giant_patch14_224, 4 GB) is a valid safetensors
file written sparse (its header from the model's meta-device shapes, zeros for values: nothing to read).
`vitcli --help` is measured too: the floor of any vitcli process on the machine.
Usage: python benchmarks/bench_info.py [--repeats 5] [--folder DIR]
"""

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, paired_ratio, peak_rss_mb, run, vitcli_command  # noqa: E402

GOALS = {"ViT-B/16 safetensors": 0.5, "HF ViT folder": 0.5, "ViT-g/14 safetensors": 1.0}  # seconds
PEAK_GOAL_MB = 150
SAFETENSORS_DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16"}


def write_sparse_safetensors(state: dict, path: Path) -> None:
    """A safetensors file of `state`'s shapes (meta tensors) whose data are zeros, written sparse."""
    header, offset = {}, 0
    for key, t in state.items():
        size = t.numel() * t.element_size()
        header[key] = {"dtype": SAFETENSORS_DTYPES[str(t.dtype).removeprefix("torch.")], "shape": list(t.shape),
                       "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data start 8-byte aligned, as the safetensors library writes it
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text)
        f.truncate(8 + len(text) + offset)


def make_files(folder: Path) -> dict[str, Path]:
    """The three checkpoints the goals name."""
    import timm
    import torch
    from safetensors.torch import save_file
    from transformers import ViTConfig, ViTModel

    files = {"ViT-B/16 safetensors": folder / "vit_base_patch16_224.safetensors", "HF ViT folder": folder / "hf_vit",
             "ViT-g/14 safetensors": folder / "vit_giant_patch14_224.safetensors"}
    if not files["ViT-B/16 safetensors"].exists():
        state = timm.create_model("vit_base_patch16_224", pretrained=False).state_dict()
        save_file({k: v.contiguous() for k, v in state.items()}, files["ViT-B/16 safetensors"])
    if not files["HF ViT folder"].exists():
        ViTModel(ViTConfig()).save_pretrained(files["HF ViT folder"])
    if not files["ViT-g/14 safetensors"].exists():
        with torch.device("meta"):
            giant = timm.create_model("vit_giant_patch14_224", pretrained=False)
        write_sparse_safetensors(giant.state_dict(), files["ViT-g/14 safetensors"])
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--folder", type=Path, help="where the checkpoints are made (kept); default a temporary folder")
    args = parser.parse_args()
    print(machine())
    folder = args.folder or Path(tempfile.mkdtemp(prefix="bench_info_"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        files = make_files(folder)
        commands = {name: [*vitcli_command(), "info", "--weights", str(p), "--json"] for name, p in files.items()}
        commands['python -c "import torch"'] = [sys.executable, "-c", "import torch"]
        commands["vitcli --help"] = [*vitcli_command(), "--help"]  # the floor: any vitcli process costs this
        times: dict[str, list[float]] = {name: [] for name in commands}
        for i in range(args.repeats):
            order = list(commands.items())
            for name, cmd in order[::-1] if i % 2 else order:
                times[name].append(run(cmd)[0])
        torch_times = times['python -c "import torch"']
        print(f'python -c "import torch": {statistics.median(torch_times):.2f} s, vitcli --help (the floor of a '
              f'vitcli process): {statistics.median(times["vitcli --help"]):.2f} s (medians of {args.repeats})')
        for name, goal in GOALS.items():
            peak = peak_rss_mb(commands[name])
            print(f"vitcli info --weights {name}: {statistics.median(times[name]):.2f} s (goal ≤ {goal:g} s), "
                  f"{paired_ratio(times[name], torch_times):.2f}× import torch, "
                  f"{paired_ratio(times[name], times['vitcli --help']):.2f}× vitcli --help, peak {peak:.0f} MB "
                  f"(goal < {PEAK_GOAL_MB} MB)")
    finally:
        if args.folder is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
