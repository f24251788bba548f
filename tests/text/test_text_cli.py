"""`vitcli embed --text` and `vitcli classify` from the shell: outputs, tables, JSON, and bad input as one line,
a non-zero exit and nothing written."""

import json
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import vitcli
from tests.conftest import assert_clean_error, run_cli, sampled
from tests.text.peers import open_clip_bpe, open_clip_model, save_open_clip


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    """An open_clip CLIP folder with open_clip's BPE file beside the weights, and two 64×64 images."""
    model, cfg = open_clip_model(False, 21)
    folder = save_open_clip(tmp_path_factory.mktemp("clip"), model, cfg)
    shutil.copy(open_clip_bpe(), folder)
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png"):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder.parent / name)
    return folder


def test_embed_text_writes_the_embeddings_and_reports_truncation(clip_folder, tmp_path) -> None:
    out = tmp_path / "t.npy"
    long = " ".join(["word"] * 200)
    r = run_cli("embed", "--text", "a photo of a cat", "--text", long, "--weights", clip_folder, "-o", out, "--json")
    assert r.returncode == 0, r.stderr.decode()
    doc = json.loads(r.stdout)
    expected = vitcli.load_model(str(clip_folder), device="cpu").embed_text(["a photo of a cat", long]).array
    assert np.array_equal(np.load(out), expected) and expected.shape == (2, 96)
    assert [p["truncated"] for p in doc["prompts"]] == [False, True]
    assert doc["prompts"][1]["tokens"] == 202 and doc["model"]["context_length"] == 77
    assert abs(doc["prompts"][0]["norm"] - float(np.linalg.norm(expected[0]))) < 1e-5


@pytest.mark.slow  # about 6 s; test_text_tables_fit_80_columns stays quick
def test_embed_text_table(clip_folder) -> None:
    r = run_cli("embed", "--text", "a cat", "--weights", clip_folder)
    text = r.stdout.decode()
    assert r.returncode == 0 and "prompts" in text and "a cat" in text and "tokens" in text and "norm" in text


def test_classify_outputs_and_json(clip_folder, tmp_path) -> None:
    images = [clip_folder.parent / "a.png", clip_folder.parent / "b.png"]
    out = tmp_path / "p.npy"
    r = run_cli("classify", *images, "--weights", clip_folder, "--labels", "cat, dog,bird", "--template",
                "a photo of a {}.", "-o", out, "--json")
    assert r.returncode == 0, r.stderr.decode()
    doc = json.loads(r.stdout)
    assert doc["labels"] == ["a photo of a cat.", "a photo of a dog.", "a photo of a bird."]
    probs = np.load(out)
    assert probs.shape == (2, 3) and np.allclose(probs.sum(-1), 1, atol=1e-5)
    assert np.allclose(probs, np.array(doc["probs"]), atol=1e-6)
    logits = np.array(doc["logits"])
    assert np.allclose(probs, np.exp(logits) / np.exp(logits).sum(-1, keepdims=True), atol=1e-5)


@pytest.mark.slow  # about 6 s; classify's outputs and JSON stay quick
def test_classify_one_image_table_sorted_by_score(clip_folder, tmp_path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("a cat\n\na dog\na bird\n")
    r = run_cli("classify", clip_folder.parent / "a.png", "--weights", clip_folder, "--labels-file", labels,
                "-o", tmp_path / "p.npy")
    assert r.returncode == 0, r.stderr.decode()
    probs = np.load(tmp_path / "p.npy")
    assert probs.shape == (3,)
    text = r.stdout.decode()
    order = [text.index(name) for name in np.array(["a cat", "a dog", "a bird"])[np.argsort(-probs)]]
    assert order == sorted(order)


def test_classify_with_the_head_labels_of_a_classifier(tmp_path) -> None:
    """A transformers classifier with id2label: no --labels, the head's own labels and softmax."""
    import transformers

    config = transformers.ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                    image_size=32, patch_size=16, num_labels=3,
                                    id2label={0: "cat", 1: "dog", 2: "bird"}, label2id={"cat": 0, "dog": 1, "bird": 2})
    from tests.checkpoints.parity import scramble

    peer = scramble(transformers.ViTForImageClassification(config), 5)
    peer.save_pretrained(str(tmp_path / "vit"))
    image = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    result = vitcli.load_model(str(tmp_path / "vit"), device="cpu").classify(image, size=32, fit="strict")
    x = (torch.from_numpy(image).permute(2, 0, 1)[None].double() / 255 - 0.5) / 0.5  # ViTImageProcessor's defaults
    with torch.no_grad():
        expected = peer(pixel_values=x.float()).logits[0]
    assert result.labels == ["cat", "dog", "bird"] and result.rule == "head"
    assert np.abs(result.logits - expected.numpy()).max() <= 1e-4
    assert np.allclose(result.probs, expected.softmax(-1).numpy(), atol=1e-5)


@pytest.mark.slow  # about 10 s; test_view_text.py's one line for a model without a text tower stays quick
def test_no_text_tower(tmp_path, clip_folder) -> None:
    """The image tower alone (open_clip's visual.* keys): the one line, nothing written."""
    from safetensors.torch import load_file, save_file

    state = load_file(str(clip_folder / "open_clip_model.safetensors"))
    save_file({k: v for k, v in state.items() if k.startswith("visual.")}, str(tmp_path / "visual.safetensors"))
    out = tmp_path / "t.npy"
    r = run_cli("embed", "--text", "a cat", "--weights", tmp_path / "visual.safetensors", "-o", out)
    assert_clean_error(r, "holds no text tower: text options need a CLIP-family checkpoint")
    assert not out.exists()
    r = run_cli("classify", clip_folder.parent / "a.png", "--model", "vit-ti16", "--labels", "a,b", "-o", out)
    assert_clean_error(r, "holds no text tower")
    assert not out.exists()


@pytest.mark.slow
def test_missing_tokenizer_names_the_option(tmp_path, clip_folder) -> None:
    from safetensors.torch import load_file

    state = load_file(str(clip_folder / "open_clip_model.safetensors"))
    state.update(input_resolution=torch.tensor(64), context_length=torch.tensor(77), vocab_size=torch.tensor(49408))
    torch.save(state, tmp_path / "ViT-T-16.pt")  # OpenAI's layout: nothing beside it
    out = tmp_path / "t.npy"
    r = run_cli("embed", "--text", "a cat", "--weights", tmp_path / "ViT-T-16.pt", "-o", out)
    assert_clean_error(r, "--tokenizer PATH")
    assert not out.exists()
    r = run_cli("embed", "--text", "a cat", "--weights", tmp_path / "ViT-T-16.pt", "--tokenizer", open_clip_bpe(),
                "-o", out)
    assert r.returncode == 0 and np.load(out).shape == (1, 96)


def _fifo(path) -> str:
    os.mkfifo(path)
    return str(path)


@sampled("case", ["empty", "binary", "dev-zero", "fifo", "no-template-slot"])
def test_bad_labels(clip_folder, tmp_path, case: str) -> None:
    args = {"empty": ["--labels", " , ,"], "binary": ["--labels-file", tmp_path / "labels.bin"],
            "dev-zero": ["--labels-file", "/dev/zero"], "fifo": ["--labels-file", tmp_path / "fifo"],
            "no-template-slot": ["--labels", "a,b", "--template", "a photo"]}[case]
    (tmp_path / "labels.bin").write_bytes(b"cat\n\x00\xff\xfe dog\n")
    if case == "fifo":
        _fifo(tmp_path / "fifo")  # no writer: reading it would block for ever
    out = tmp_path / "p.npy"
    r = run_cli("classify", clip_folder.parent / "a.png", "--weights", clip_folder, *args, "-o", out)
    option = {"empty": "--labels", "no-template-slot": "--template"}.get(case, "--labels-file")
    assert_clean_error(r, option)
    assert not out.exists()


def test_text_with_images_is_refused(clip_folder) -> None:
    r = run_cli("embed", clip_folder.parent / "a.png", "--text", "a cat", "--weights", clip_folder)
    assert_clean_error(r, "--text")


def test_text_tables_fit_80_columns(clip_folder) -> None:
    """No number cut at 80 columns (rich marks a cut with …): embed --text's and classify's tables."""
    from rich.console import Console

    from vitcli.cli import text as text_cli

    model = vitcli.load_model(str(clip_folder), device="cpu")
    console = Console(width=80, record=True, force_terminal=False, color_system=None)
    for r in text_cli.text_table(model.embed_text(["a photo of a cat", "a dog"]).document):
        console.print(r)
    images = [str(clip_folder.parent / "a.png"), str(clip_folder.parent / "b.png")]
    for r in text_cli._tables(model.classify(images, labels="a cat,a dog").document):
        console.print(r)
    text = console.export_text()
    assert "…" not in text, text
    assert "(2, 96)" in text and "a photo of a cat" in text
