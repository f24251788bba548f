"""Every example in `--help` and in the README runs as written, in a folder holding the files the
examples name (photos, timm / DINOv2 / Hugging Face checkpoints, a Hugging Face cache)."""

import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest

from tests.conftest import SAMPLES


def example_lists() -> list[tuple[str, list[str]]]:
    from vitcli.cli import attend, embed, figures, info, patchify, posenc

    lists = [("patchify", patchify.EXAMPLES), ("embed", embed.EXAMPLES), ("attend", attend.EXAMPLES),
             ("posenc", posenc.EXAMPLES), ("info", info.EXAMPLES), ("figures", figures.EXAMPLES)]
    lists += [(f"figures {n.lower()}", getattr(figures, f"{n}_EXAMPLES")) for n in ("FILTERS", "PCA", "SIMILAR", "NORMS")]
    return lists


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """cat.jpg, dog.jpg, photos/, and timm checkpoints vit.safetensors and wide.safetensors (224×448)."""
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("examples")
    shutil.copy(SAMPLES / "chelsea.jpg", root / "cat.jpg")
    shutil.copy(SAMPLES / "coffee.jpg", root / "dog.jpg")
    (root / "photos").mkdir()
    for name in ("astronaut.jpg", "rocket.jpg", "coffee.jpg"):
        shutil.copy(SAMPLES / name, root / "photos" / name)
    for name in ("photo.jpg", "img.jpg", "a.jpg", "b.jpg"):
        shutil.copy(SAMPLES / "astronaut.jpg", root / name)
    shutil.copytree(SAMPLES, root / "sample_images")
    # vit: 12 blocks, for `view --layers 0,3,6,9,11`
    checkpoints = {"vit": ("vit_tiny_patch16_224", dict(img_size=224, depth=12)),
                   "wide": ("vit_tiny_patch16_224", dict(img_size=(224, 448))),
                   "vit_base_patch16_224": ("vit_tiny_patch16_224", {}),
                   "dinov2": ("vit_small_patch14_dinov2", dict(img_size=224, depth=7)),  # the README asks --layer 6
                   "dinov2_reg4": ("vit_small_patch14_reg4_dinov2", dict(img_size=224))}
    for name, (arch, kwargs) in checkpoints.items():
        model = timm.create_model(arch, pretrained=False, **{"depth": 2, **kwargs})
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(root / f"{name}.safetensors"))
    _hf_cache(root / "hf-cache", "google/vit-base-patch16-224")
    return root


def _hf_cache(cache, repo: str) -> None:
    """A Hugging Face cache holding a tiny transformers ViTModel under `repo` (refs/main → snapshot)."""
    from transformers import ViTConfig, ViTModel

    commit = "0" * 40
    base = cache / ("models--" + repo.replace("/", "--"))
    (base / "refs").mkdir(parents=True)
    (base / "refs" / "main").write_text(commit)
    config = ViTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128)
    ViTModel(config, add_pooling_layer=False).save_pretrained(base / "snapshots" / commit)


# README sections whose examples run here; the newer families' subsections (SigLIP, BEiT, DINOv3 folders)
# and Datasets (a Ray cluster) are covered by their own tests instead.
RUN_SECTIONS = ("patchify", "embed", "posenc", "attend", "explain", "info and checkpoints", "Figures", "view",
                "Output conventions", "Many images")


def readme_examples() -> list[str]:
    """The `vitcli …` lines of the bash blocks of RUN_SECTIONS (continuations joined, comments dropped)."""
    text = (SAMPLES.parent / "README.md").read_text()
    sections = re.split(r"\n(?=## |### )", text)
    chosen = "\n".join(sec for sec in sections if sec.startswith("## ") and sec[3:].split("\n")[0].strip() in RUN_SECTIONS)
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", chosen, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#\s.*$", "", line.strip())
            if line.startswith(("vitcli ", "find ")) and "pip install" not in line:
                lines.append(line)
    return lines


def run_line(line: str, folder) -> subprocess.CompletedProcess:
    """One example as a shell line, `vitcli` and `python` being this interpreter."""
    python = shlex.quote(sys.executable)
    cmd = re.sub(r"(^|\| )vitcli ", lambda m: f"{m.group(1)}{python} -m vitcli ", line)
    cmd = re.sub(r"\| python -c", f"| {python} -c", cmd)
    env = {**os.environ, "NO_COLOR": "1", "HF_HUB_CACHE": str(folder / "hf-cache"), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(["bash", "-c", cmd], cwd=folder, capture_output=True, timeout=900, env=env)


def test_readme_examples_run(folder):
    lines = readme_examples()
    assert len(lines) > 30
    failed = []
    for line in lines:
        r = run_line(line, folder)
        if r.returncode != 0:
            failed.append((line, r.stderr.decode()[-600:]))
    assert not failed, failed


@pytest.mark.parametrize("command, examples", example_lists(), ids=[c for c, _ in example_lists()])
def test_help_examples_run(folder, command, examples):
    assert examples, command
    for line in examples:
        assert line.startswith("vitcli "), line
        r = run_line(line, folder)
        assert r.returncode == 0, (line, r.stderr.decode()[-2000:])
