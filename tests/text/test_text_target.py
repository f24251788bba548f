"""`--target text:PROMPT`: the API side builds Target("text", other = the prompt's text embedding (E,)).

The core's scoring of a text target (cos of the projected pooled image embedding with `other`) is built in
vitcli/core/explain.py by another branch; the end-to-end test below is skipped until the core knows "text"."""

from typing import get_args

import numpy as np
import pytest
import torch

import vitcli
from tests.text.peers import open_clip_bpe, open_clip_model, save_open_clip
from vitcli.api.explain import parse_target, target_form
from vitcli.errors import VitcliError


def _core_scores_text() -> bool:
    from vitcli.core import explain

    return "text" in get_args(explain.TargetKind)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    import shutil

    model, cfg = open_clip_model(False, 31)
    folder = save_open_clip(tmp_path_factory.mktemp("clip_target"), model, cfg)
    shutil.copy(open_clip_bpe(), folder)
    return vitcli.load_model(str(folder), device="cpu"), model


def test_text_target_is_the_prompts_text_embedding(clip) -> None:
    import open_clip

    model, peer = clip
    prompt = "a photo of a cat: tabby, striped"  # ':' and ',' belong to the prompt
    target, label = parse_target(model, f"text:{prompt}", None, None)
    with torch.no_grad():
        expected = peer.encode_text(open_clip.SimpleTokenizer(context_length=77)([prompt]))[0]
    assert target.kind == "text" and label == f"text:{prompt}"
    assert target.other.shape == (96,) and target.other.dtype == torch.float32
    assert (target.other - expected).abs().max().item() <= 1e-5


def test_text_target_form() -> None:
    assert target_form(" text:a dog ") == "text:a dog"
    with pytest.raises(VitcliError, match="text:PROMPT"):
        target_form("text:")
    with pytest.raises(VitcliError, match="text:PROMPT"):
        target_form("txt:a dog")


def test_text_target_without_a_text_tower() -> None:
    model = vitcli.load_model("vit-ti16", device="cpu")
    with pytest.raises(VitcliError, match="holds no text tower: text options need a CLIP-family checkpoint"):
        parse_target(model, "text:a cat", None, None)


@pytest.mark.skipif(not _core_scores_text(), reason="vitcli/core/explain.py scores text targets after the legrad merge")
def test_explain_text_target_score_is_the_peers_cosine(clip) -> None:
    """y = cos(projected pooled image embedding, text embedding), as open_clip computes both."""
    import open_clip

    model, peer = clip
    image = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    result = model.explain(image, target="text:a photo of a cat", size=64, fit="strict")
    x = torch.from_numpy(image).permute(2, 0, 1)[None].double() / 255
    mean = torch.tensor((0.48145466, 0.4578275, 0.40821073)).view(1, 3, 1, 1)
    std = torch.tensor((0.26862954, 0.26130258, 0.27577711)).view(1, 3, 1, 1)
    with torch.no_grad():
        image_f = peer.encode_image(((x - mean) / std).float())[0]
        text_f = peer.encode_text(open_clip.SimpleTokenizer(context_length=77)(["a photo of a cat"]))[0]
    expected = torch.nn.functional.cosine_similarity(image_f, text_f, dim=0).item()
    assert abs(float(result.score) - expected) <= 1e-4
