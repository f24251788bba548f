"""Every example in `--help` runs as written (in a folder holding the files the examples name)."""

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
    for name, size in (("vit", 224), ("wide", (224, 448))):
        model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=size, depth=2)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(root / f"{name}.safetensors"))
    return root


@pytest.mark.parametrize("command, examples", example_lists(), ids=[c for c, _ in example_lists()])
def test_help_examples_run(folder, command, examples):
    assert examples, command
    for line in examples:
        assert line.startswith("vitcli "), line
        words = shlex.split(line.replace("python -c", "PYTHON -c"))
        cmd = " ".join(shlex.quote(w) for w in words)
        cmd = cmd.replace("vitcli ", f"{shlex.quote(sys.executable)} -m vitcli ", 1).replace("PYTHON", shlex.quote(sys.executable))
        cmd = cmd.replace("' | '", " | ").replace(" '|' ", " | ")
        r = subprocess.run(["bash", "-c", cmd], cwd=folder, capture_output=True, timeout=600,
                           env={**__import__("os").environ, "NO_COLOR": "1"})
        assert r.returncode == 0, (line, r.stderr.decode()[-2000:])
