"""`figures similar --text`: the cosine of every patch's joint-space feature with the prompt's text embedding.

References from the peers' own modules: open_clip's ln_post tokens times its visual proj (CLIP), and transformers'
SigLIP attention-pooling head run on each patch alone (the probe with one key), against their text features."""

import shutil

import numpy as np
import pytest
import torch

import vitcli
from tests.conftest import assert_clean_error, run_cli
from tests.text.peers import hf_model, open_clip_bpe, open_clip_model, save_hf, save_open_clip, siglip_tokenizer
from tests.text.test_text_parity import OPENAI_MEAN, OPENAI_STD, normalised, pixels

TOL = 1e-5


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    model, cfg = open_clip_model(False, 41)
    folder = save_open_clip(tmp_path_factory.mktemp("clip_similar"), model, cfg)
    shutil.copy(open_clip_bpe(), folder)
    return folder, model


def test_open_clip_text_map(clip) -> None:
    import open_clip

    folder, peer = clip
    image = pixels(64, 5, count=1)[0]
    result = vitcli.load_model(str(folder), device="cpu").similar(image, text="a photo of a cat", size=64, fit="strict")
    peer.visual.output_tokens = True
    with torch.no_grad():
        _, tokens = peer.visual(normalised([image], OPENAI_MEAN, OPENAI_STD))  # (1, N, D) after ln_post
        text = peer.encode_text(open_clip.SimpleTokenizer(context_length=77)(["a photo of a cat"]))[0]
        expected = torch.nn.functional.cosine_similarity(tokens[0] @ peer.visual.proj, text[None], dim=-1)
    peer.visual.output_tokens = False
    assert result.array.shape == (4, 4)
    assert np.abs(result.array - expected.reshape(4, 4).numpy()).max() <= TOL
    assert result.document["query"] == {"text": "a photo of a cat"}


def test_siglip_text_map_through_the_pooling_head(tmp_path) -> None:
    tok = siglip_tokenizer(tmp_path, 64)
    peer = hf_model("siglip", 42, vocab=len(tok), context=64)
    save_hf(tmp_path, peer)
    image = pixels(32, 6, count=1)[0]
    result = vitcli.load_model(str(tmp_path), device="cpu").similar(image, text="a dog", size=32, fit="strict")
    enc = tok(["a dog"], padding="max_length", max_length=64, truncation=True, return_tensors="pt")
    with torch.no_grad():
        hidden = peer.vision_model(pixel_values=normalised([image], (0.5,) * 3, (0.5,) * 3)).last_hidden_state
        patches = torch.cat([peer.vision_model.head(hidden[:, i:i + 1]) for i in range(hidden.shape[1])])  # (N, D)
        text = peer.get_text_features(**enc).pooler_output
        expected = torch.nn.functional.cosine_similarity(patches, text, dim=-1)
    assert np.abs(result.array - expected.reshape(2, 2).numpy()).max() <= TOL


@pytest.mark.slow
def test_text_map_cli_and_conflicts(clip, tmp_path) -> None:
    folder, _ = clip
    from PIL import Image

    Image.fromarray(pixels(64, 7, count=1)[0]).save(tmp_path / "a.png")
    out, png = tmp_path / "s.npy", tmp_path / "s.png"
    r = run_cli("figures", "similar", tmp_path / "a.png", "--text", "a cat", "--weights", folder, "-o", out,
                "--png", png)
    assert r.returncode == 0, r.stderr.decode()
    assert np.load(out).shape == (4, 4) and png.stat().st_size > 0 and "query text" in r.stdout.decode()
    out.unlink()
    r = run_cli("figures", "similar", tmp_path / "a.png", "--text", "a cat", "--patch", "1,1", "--weights", folder,
                "-o", out)
    assert_clean_error(r, "--patch", "--text")
    assert not out.exists()
