"""Token ids (and masks) equal the peers' tokenizers on awkward prompts: CLIP's BPE (open_clip's SimpleTokenizer
with the file open_clip ships), SentencePiece as transformers' SiglipTokenizer (a model trained here), open_clip's
HFTokenizer with big_vision's canonicalisation, and transformers' CLIPTokenizer (tokenizer.json)."""

import pytest
import torch

from tests.text.peers import AWKWARD, hf_clip_tokenizer, open_clip_bpe, siglip_tokenizer
from vitcli.checkpoints.tokenizers import load_tokenizer
from vitcli.errors import VitcliError


@pytest.fixture(scope="module")
def sp_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("siglip_tok")
    return folder, siglip_tokenizer(folder, 64)


@pytest.mark.parametrize("context", [77, 16])
def test_clip_bpe_equals_open_clip_simple_tokenizer(context: int) -> None:
    import open_clip

    ours = load_tokenizer(open_clip_bpe(), "lower")(AWKWARD, context)
    peer = open_clip.SimpleTokenizer(context_length=context)(AWKWARD)
    assert torch.equal(torch.tensor(ours.ids), peer)
    assert ours.truncated[-1] and not ours.truncated[0]  # 500 words are cut, a short prompt is not
    assert ours.counts[1] == 2  # the empty prompt: start and end of text


def test_clip_bpe_from_hugging_face_merges_txt(tmp_path) -> None:
    """A CLIP repository's merges.txt gives the ids open_clip's gzipped file gives."""
    from tests.text.peers import clip_vocab_files

    _, merges = clip_vocab_files(tmp_path)
    assert load_tokenizer(merges, "lower")(AWKWARD, 77).ids == load_tokenizer(open_clip_bpe(), "lower")(AWKWARD, 77).ids


@pytest.mark.parametrize("context", [64, 8])
def test_sentencepiece_equals_transformers_siglip_tokenizer(sp_folder, context: int) -> None:
    folder, peer = sp_folder
    ours = load_tokenizer(folder / "spiece.model")(AWKWARD, context)
    enc = peer(AWKWARD, padding="max_length", max_length=context, truncation=True)
    assert ours.ids == enc.input_ids
    assert ours.mask == enc.attention_mask


def test_open_clip_canonicalize_then_sentencepiece_equals_open_clip_hf_tokenizer(sp_folder) -> None:
    """open_clip's SigLIP: its 'canonicalize' clean step, then the Hugging Face tokenizer, padded to 64, no mask."""
    import open_clip

    folder, _ = sp_folder
    peer = open_clip.tokenizer.HFTokenizer(str(folder), context_length=64, clean="canonicalize")
    assert torch.equal(torch.tensor(load_tokenizer(folder, "canonicalize")(AWKWARD, 64).ids), peer(AWKWARD))


def test_tokenizer_json_equals_transformers_clip_tokenizer(tmp_path) -> None:
    peer = hf_clip_tokenizer(tmp_path)
    ours = load_tokenizer(tmp_path / "tokenizer.json")(AWKWARD, 77)
    enc = peer(AWKWARD, padding="max_length", max_length=77, truncation=True)
    assert ours.ids == enc.input_ids
    assert ours.mask == enc.attention_mask


@pytest.mark.parametrize("name,content", [("tokenizer.json", b"{not json"), ("spiece.model", b"\x00\x01garbage"),
                                          ("merges.txt", b"#version\na b\n")])
def test_a_broken_tokenizer_file_is_one_error(tmp_path, name: str, content: bytes) -> None:
    (tmp_path / name).write_bytes(content)
    with pytest.raises(VitcliError) as e:
        load_tokenizer(tmp_path / name)
    assert name in str(e.value) and "\n" not in str(e.value)
