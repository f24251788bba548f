"""`vitcli view --text`: a panel per prompt holding `explain --method legrad --target text:PROMPT`'s map and
`classify`'s zero-shot score, on a scrambled depth-2 open_clip CLIP saved as its hub lays it out."""

import base64
import json
import re
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import vitcli
from tests.conftest import SAMPLES, assert_clean_error, run_cli
from tests.text.peers import open_clip_bpe, open_clip_model, save_open_clip

PROMPTS = ["a photo of a cat", "a photo of a dog", "a rocket: tall, white"]
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """(folder, 64×64 image path, open_clip peer) for a scrambled 2-block CLIP with its BPE file."""
    d = tmp_path_factory.mktemp("view_text")
    peer, cfg = open_clip_model(False, 41)
    folder = save_open_clip(d / "clip", peer, cfg)
    shutil.copy(open_clip_bpe(), folder)
    Image.fromarray(np.random.default_rng(5).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(d / "img.png")
    return folder, d / "img.png", peer


@pytest.fixture(scope="module")
def page(clip, tmp_path_factory):
    """The page's data and the ViewResult for PROMPTS on the image."""
    folder, img, _ = clip
    out = tmp_path_factory.mktemp("view_text_page") / "p.html"
    model = vitcli.load_model(str(folder), device="cpu")
    res = model.view(str(img), output=str(out), layers="-1", text=PROMPTS)
    raw = re.search(r'<script type="application/json" id="vitcli-data">(.*?)</script>', out.read_text(), re.DOTALL)
    return json.loads(raw.group(1)), res, model


def _peer_logits(peer, img) -> np.ndarray:
    """CLIP's zero-shot logits exp(logit_scale)·cos(image, prompt) (K,), as open_clip computes the embeddings."""
    import open_clip

    x = torch.from_numpy(np.array(Image.open(img))).permute(2, 0, 1)[None].double() / 255  # (1, 3, 64, 64)
    x = (x - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        image = torch.nn.functional.normalize(peer.encode_image(x.float()), dim=-1)  # (1, E)
        text = torch.nn.functional.normalize(peer.encode_text(open_clip.SimpleTokenizer(context_length=77)(PROMPTS)), dim=-1)  # (K, E)
        return (peer.logit_scale.exp() * image @ text.T)[0].double().numpy()  # (K,)


def test_maps_are_explains_legrad_maps(page, clip) -> None:
    data, _, model = page
    _, img, _ = clip
    panels = data["tabs"][0]["text"]["panels"]
    assert data["text"] == {"prompts": PROMPTS, "rule": "softmax"} and [p["prompt"] for p in panels] == PROMPTS
    for p in panels:
        expected = model.explain(str(img), target=f"text:{p['prompt']}", method="legrad").maps  # (4, 4)
        got = np.frombuffer(base64.b64decode(p["map"]["data"]), np.float32)
        assert p["map"]["shape"] == [16] and expected.shape == (4, 4)
        assert np.array_equal(got, expected.reshape(-1).astype(np.float32))
        assert got.min() == 0 and got.max() == 1  # LeGrad's maps are min-max scaled


def test_scores_are_classifys_and_clips_softmax(page, clip) -> None:
    data, res, model = page
    _, img, peer = clip
    panels = data["tabs"][0]["text"]["panels"]
    found = model.classify(str(img), labels=PROMPTS)
    probs, logits = np.array([p["prob"] for p in panels]), np.array([p["logit"] for p in panels])
    assert found.rule == "softmax" and np.array_equal(probs, found.probs) and np.array_equal(logits, found.logits)
    peer_logits = _peer_logits(peer, img)
    e = np.exp(peer_logits - peer_logits.max())
    assert np.abs(logits - peer_logits).max() <= 1e-4 and np.abs(probs - e / e.sum()).max() <= 1e-5
    assert res.document["text"]["scores"][0]["probs"] == probs.tolist()


def test_page_without_text_has_no_text_data(clip, tmp_path) -> None:
    folder, img, _ = clip
    model = vitcli.load_model(str(folder), device="cpu")
    model.view(str(img), output=str(tmp_path / "p.html"), layers="-1")
    text = (tmp_path / "p.html").read_text()
    data = json.loads(re.search(r'id="vitcli-data">(.*?)</script>', text, re.DOTALL).group(1))
    assert data["text"] is None and data["tabs"][0]["text"] is None
    assert model._text is None  # the text tower is never read without --text


def test_cli_writes_the_scores(clip, tmp_path) -> None:
    folder, img, _ = clip
    r = run_cli("view", img, "--weights", folder, "--layers", "1", "--text", "a cat", "--text", "a dog", "-o",
                tmp_path / "p.html")
    assert r.returncode == 0, r.stderr.decode()
    assert "'a cat': 0." in r.stdout.decode() and "softmax" in r.stdout.decode()


def test_model_without_a_text_tower_one_line_nothing_written(clip, tmp_path) -> None:
    _, img, _ = clip
    r = run_cli("view", img, "--model", "vit-ti16", "--depth", "2", "--size", "32", "--text", "a cat", "-o",
                tmp_path / "x.html")
    assert_clean_error(r, "holds no text tower: text options need a CLIP-family checkpoint")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("text", [["  "], [], ["a cat", ""]])
def test_empty_prompt_is_refused_before_any_work(page, clip, tmp_path, text) -> None:
    _, img, _ = clip
    with pytest.raises(vitcli.VitcliError, match="text.*empty prompt"):
        page[2].view(str(img), output=str(tmp_path / "x.html"), text=text)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow  # about 10 s; test_text_cli.py's test_no_text_tower stays quick
def test_timm_checkpoint_holds_no_text_tower(tmp_path) -> None:
    """A checkpoint file of an image ViT alone: the same line, naming the file, nothing written."""
    import timm
    from safetensors.torch import save_file

    save_file(timm.create_model("vit_tiny_patch16_224", depth=1, num_classes=0).state_dict(), tmp_path / "v.safetensors")
    r = run_cli("view", SAMPLES / "chelsea.jpg", "--weights", tmp_path / "v.safetensors", "--text", "a cat", "-o",
                tmp_path / "x.html")
    assert_clean_error(r, "v.safetensors", "holds no text tower")
    assert not (tmp_path / "x.html").exists()


def test_siglip_scores_are_each_prompts_sigmoid(tmp_path) -> None:
    """SigLIP (attention-pool head, logit_bias): each prompt's own sigmoid, as classify and open_clip give it."""
    import open_clip

    from tests.text.peers import siglip_tokenizer

    tokenizer = siglip_tokenizer(tmp_path, 64)
    peer, cfg = open_clip_model(True, 44, vocab=tokenizer.vocab_size, context=64)
    folder = save_open_clip(tmp_path, peer, cfg)
    img = tmp_path / "img.png"
    Image.fromarray(np.random.default_rng(7).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(img)
    model = vitcli.load_model(str(folder), device="cpu")
    res = model.view(str(img), output=str(tmp_path / "p.html"), layers="-1", text=PROMPTS[:2])
    scores = res.document["text"]
    found = model.classify(str(img), labels=PROMPTS[:2])
    assert scores["rule"] == found.rule == "sigmoid" and scores["scores"][0]["probs"] == found.probs.tolist()
    x = torch.from_numpy(np.array(Image.open(img))).permute(2, 0, 1)[None].double() / 255  # (1, 3, 64, 64)
    x = (x - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    ids = open_clip.tokenizer.HFTokenizer(str(folder), context_length=64, clean="canonicalize")(PROMPTS[:2])
    with torch.no_grad():
        image_f, text_f, scale, bias = peer(x.float(), ids)
        logits = (scale * image_f @ text_f.T + bias)[0].double().numpy()  # (K,)
    assert np.abs(np.array(scores["scores"][0]["logits"]) - logits).max() <= 1e-4
    assert np.abs(np.array(scores["scores"][0]["probs"]) - 1 / (1 + np.exp(-logits))).max() <= 1e-5

