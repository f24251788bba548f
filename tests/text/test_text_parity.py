"""Text embeddings equal the peers' (open_clip encode_text, transformers get_text_features) ≤ 1e-5, and classify's
logits equal the peers' logits_per_image ≤ 1e-4: open_clip CLIP (causal, argmax), an OpenAI-layout state dict
(QuickGELU, no tokenizer beside it), open_clip SigLIP (bidirectional, last token, Linear projection, logit_bias),
transformers CLIPModel, SiglipModel and Siglip2Model. Each peer is built once per module (2-block towers,
scrambled weights), saved as its hub lays it out, and read back by vitcli."""

import shutil

import numpy as np
import pytest
import torch

import vitcli
from tests.text.peers import (
    AWKWARD,
    PROMPTS,
    diff,
    hf_clip_tokenizer,
    hf_model,
    open_clip_bpe,
    open_clip_model,
    save_hf,
    save_open_clip,
    siglip_tokenizer,
)
from vitcli.errors import VitcliError

TEXT_TOL = 1e-5
LOGIT_TOL = 1e-4
LABELS = ["a photo of a cat", "a dog", "", "Ünïcödé 🐱"]
OPENAI_MEAN, OPENAI_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


def pixels(size: int, seed: int, count: int = 2) -> list[np.ndarray]:
    """`count` random (size, size, 3) uint8 images: at the native size, so no resize touches them."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(count)]


def normalised(images: list[np.ndarray], mean, std) -> torch.Tensor:
    """(B, 3, H, W): x/255, minus mean, over std (the peers' processors at their native size)."""
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).double() / 255
    return ((x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)).float()


@pytest.fixture(scope="module")
def open_clip_causal(tmp_path_factory):
    model, cfg = open_clip_model(False, 11)
    folder = save_open_clip(tmp_path_factory.mktemp("oc_clip"), model, cfg)
    shutil.copy(open_clip_bpe(), folder)  # as a user passes open_clip's file beside the weights
    return folder, model


@pytest.fixture(scope="module")
def open_clip_siglip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("oc_siglip")
    tok = siglip_tokenizer(folder, 64)
    model, cfg = open_clip_model(True, 12, vocab=tok.vocab_size, context=64)
    return save_open_clip(folder, model, cfg), model


def test_open_clip_clip_text_embeddings(open_clip_causal) -> None:
    import open_clip

    folder, peer = open_clip_causal
    result = vitcli.load_model(str(folder), device="cpu").embed_text(AWKWARD)
    with torch.no_grad():
        expected = peer.encode_text(open_clip.SimpleTokenizer(context_length=77)(AWKWARD))
    assert diff(result.array, expected) <= TEXT_TOL
    assert result.truncated == [False] * 8 + [True]


def test_open_clip_clip_classify_logits(open_clip_causal) -> None:
    import open_clip

    folder, peer = open_clip_causal
    images = pixels(64, 1)
    result = vitcli.load_model(str(folder), device="cpu").classify(images, labels=LABELS, size=64, fit="strict")
    with torch.no_grad():
        image_f, text_f, scale = peer(normalised(images, OPENAI_MEAN, OPENAI_STD),
                                      open_clip.SimpleTokenizer(context_length=77)(LABELS))
        logits = scale * image_f @ text_f.T  # open_clip's logits_per_image (features normalised by the model)
    assert diff(result.logits, logits) <= LOGIT_TOL
    assert diff(result.probs, logits.softmax(-1)) <= LOGIT_TOL
    assert result.rule == "softmax" and result.probs.shape == (2, len(LABELS))


def test_openai_layout_state_dict_needs_a_tokenizer_and_matches(tmp_path) -> None:
    """OpenAI's state dicts carry input_resolution / context_length / vocab_size: QuickGELU, and no tokenizer file."""
    import open_clip

    peer, _ = open_clip_model(False, 13, quick_gelu=True)
    state = {**peer.state_dict(), "input_resolution": torch.tensor(64), "context_length": torch.tensor(77),
             "vocab_size": torch.tensor(49408)}
    torch.save(state, tmp_path / "ViT-T-16.pt")
    model = vitcli.load_model(str(tmp_path / "ViT-T-16.pt"), device="cpu")
    with pytest.raises(VitcliError, match="tokenizer=PATH"):  # the shell says --tokenizer PATH
        model.embed_text(PROMPTS)
    result = model.embed_text(PROMPTS, tokenizer=open_clip_bpe())
    with torch.no_grad():
        expected = peer.encode_text(open_clip.SimpleTokenizer(context_length=77)(PROMPTS))
    assert diff(result.array, expected) <= TEXT_TOL
    assert any("quick_gelu" in note for note in model.text_tower().notes)


def test_open_clip_custom_text_clip_style_as_pe(tmp_path) -> None:
    """CustomTextCLIP with CLIP's causal tower under `text.` and a matrix projection (PE-Core's layout), context 32,
    open_clip's BPE given with tokenizer=, or found in open_clip's package (PE's hub folders hold no tokenizer file)."""
    import open_clip

    peer, cfg = open_clip_model(False, 15, context=32, custom=True)
    folder = save_open_clip(tmp_path, peer, cfg)
    model = vitcli.load_model(str(folder), device="cpu")
    result = model.embed_text(AWKWARD, tokenizer=open_clip_bpe())
    with torch.no_grad():
        expected = peer.encode_text(open_clip.SimpleTokenizer(context_length=32)(AWKWARD))
    assert diff(result.array, expected) <= TEXT_TOL
    assert model.text_tower().layout == "open_clip-custom" and result.context == 32
    again = vitcli.load_model(str(folder), device="cpu")  # no tokenizer given: open_clip's own file, as open_clip does
    assert np.array_equal(again.embed_text(AWKWARD).array, result.array)
    assert again.text_tower().tokenizer.path == str(open_clip_bpe())


def test_open_clip_siglip_text_embeddings(open_clip_siglip) -> None:
    import open_clip

    folder, peer = open_clip_siglip
    result = vitcli.load_model(str(folder), device="cpu").embed_text(AWKWARD)
    ids = open_clip.tokenizer.HFTokenizer(str(folder), context_length=64, clean="canonicalize")(AWKWARD)
    with torch.no_grad():
        expected = peer.encode_text(ids)
    assert diff(result.array, expected) <= TEXT_TOL


def test_open_clip_siglip_classify_logits(open_clip_siglip) -> None:
    import open_clip

    folder, peer = open_clip_siglip
    images = pixels(64, 2)
    result = vitcli.load_model(str(folder), device="cpu").classify(images, labels=LABELS, size=64, fit="strict")
    ids = open_clip.tokenizer.HFTokenizer(str(folder), context_length=64, clean="canonicalize")(LABELS)
    with torch.no_grad():
        image_f, text_f, scale, bias = peer(normalised(images, OPENAI_MEAN, OPENAI_STD), ids)
        logits = scale * image_f @ text_f.T + bias
    assert diff(result.logits, logits) <= LOGIT_TOL
    assert diff(result.probs, torch.sigmoid(logits)) <= LOGIT_TOL
    assert result.rule == "sigmoid"


@pytest.fixture(scope="module", params=["clip", "siglip", "siglip2"])
def hf_peer(request, tmp_path_factory):
    """A transformers model saved with save_pretrained, beside its tokenizer (CLIP: tokenizer.json; SigLIP, SigLIP 2:
    a SentencePiece model trained here, as SiglipTokenizer saves it)."""
    kind = request.param
    folder = tmp_path_factory.mktemp(f"hf_{kind}")
    tok, context = (hf_clip_tokenizer(folder), 77) if kind == "clip" else (siglip_tokenizer(folder, 64), 64)
    model = hf_model(kind, 14, vocab=len(tok), context=context)
    return kind, save_hf(folder, model), model, tok, context


def test_transformers_text_embeddings(hf_peer) -> None:
    kind, folder, peer, tok, context = hf_peer
    result = vitcli.load_model(str(folder), device="cpu").embed_text(AWKWARD)
    enc = tok(AWKWARD, padding="max_length", max_length=context, truncation=True, return_tensors="pt")
    with torch.no_grad():
        expected = peer.get_text_features(**enc).pooler_output
    assert diff(result.array, expected) <= TEXT_TOL, kind


def test_transformers_classify_logits(hf_peer) -> None:
    kind, folder, peer, tok, context = hf_peer
    if kind == "siglip2":
        pytest.skip("Siglip2Model takes NaFlex patches; its image tower's parity is tests/checkpoints' business")
    images = pixels(32, 3)
    model = vitcli.load_model(str(folder), device="cpu")
    result = model.classify(images, labels=LABELS, size=32, fit="strict")
    mean, std = (OPENAI_MEAN, OPENAI_STD) if kind == "clip" else ((0.5,) * 3, (0.5,) * 3)  # the processors' defaults
    enc = tok(LABELS, padding="max_length", max_length=context, truncation=True, return_tensors="pt")
    with torch.no_grad():
        out = peer(pixel_values=normalised(images, mean, std), **enc)
    assert diff(result.logits, out.logits_per_image) <= LOGIT_TOL, kind
    rule = out.logits_per_image.softmax(-1) if kind == "clip" else torch.sigmoid(out.logits_per_image)
    assert diff(result.probs, rule) <= LOGIT_TOL, kind


def test_transformers_siglip2_with_its_tokenizer_json(tmp_path) -> None:
    """SigLIP 2's tokenizer.json as transformers loads it (Siglip2Tokenizer: lower case, left padding)."""
    from tests.text.peers import siglip2_tokenizer

    tok = siglip2_tokenizer(tmp_path)
    peer = hf_model("siglip2", 17, vocab=len(tok), context=64)
    save_hf(tmp_path, peer)
    model = vitcli.load_model(str(tmp_path), device="cpu")
    result = model.embed_text(AWKWARD)
    enc = tok(AWKWARD, padding="max_length", max_length=64, truncation=True, return_tensors="pt")
    ours = model.text_tower().tokenizer(AWKWARD, 64)
    assert ours.ids == enc.input_ids.tolist() and ours.mask == enc.attention_mask.tolist()
    with torch.no_grad():
        expected = peer.get_text_features(**enc).pooler_output
    assert diff(result.array, expected) <= TEXT_TOL


def test_labels_are_encoded_once_per_run(open_clip_causal, monkeypatch) -> None:
    """classify over B images encodes its K labels in one pass of the text tower, not one per image."""
    folder, _ = open_clip_causal
    model = vitcli.load_model(str(folder), device="cpu")
    module = model.text_module()
    calls = []
    monkeypatch.setattr(type(module), "forward", lambda self, ids, mask=None: calls.append(len(ids)) or
                        self.project(self.pool(self.tokens(ids, mask), ids)))
    model.classify(pixels(64, 4, count=3), labels=LABELS, size=64, fit="strict")
    assert calls == [len(LABELS)]


class _OpenAIArchive(torch.nn.Module):
    """An open_clip CLIP with OpenAI's top-level names, for torch.jit.trace (OpenAI's .pt files are such archives)."""

    def __init__(self, model) -> None:
        super().__init__()
        self.visual, self.transformer, self.ln_final = model.visual, model.transformer, model.ln_final
        self.token_embedding = model.token_embedding
        self.positional_embedding, self.text_projection = model.positional_embedding, model.text_projection
        self.logit_scale = model.logit_scale
        self.register_buffer("attn_mask", model.attn_mask)
        self.model = [model]  # called, not registered: its parameters are the ones above

    def forward(self, image: torch.Tensor, text: torch.Tensor):
        return self.model[0](image, text)[:2]


def test_openai_torchscript_archive(tmp_path) -> None:
    """A TorchScript archive (read without torch.jit.load): QuickGELU, the tokenizer given."""
    import warnings

    import open_clip

    peer, _ = open_clip_model(False, 16, quick_gelu=True)
    ids = open_clip.SimpleTokenizer(context_length=77)(PROMPTS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(_OpenAIArchive(peer).eval(), (torch.randn(1, 3, 64, 64), ids[:1]), check_trace=False)
    traced.save(str(tmp_path / "ViT-T-16.pt"))
    model = vitcli.load_model(str(tmp_path / "ViT-T-16.pt"), device="cpu")
    result = model.embed_text(PROMPTS, tokenizer=open_clip_bpe())
    with torch.no_grad():
        expected = peer.encode_text(ids)
    assert model.checkpoint.format == "torchscript"
    assert diff(result.array, expected) <= TEXT_TOL


def test_a_text_part_vitcli_does_not_build_is_refused(tmp_path, open_clip_causal) -> None:
    """CoCa's appended class token (text.cls_emb / cls_emb) changes the embedding: refused, not ignored."""
    from safetensors.torch import load_file, save_file

    folder, _ = open_clip_causal
    state = load_file(str(folder / "open_clip_model.safetensors"))
    save_file({**state, "cls_emb": torch.zeros(128)}, str(tmp_path / "coca.safetensors"))
    shutil.copy(open_clip_bpe(), tmp_path)
    model = vitcli.load_model(str(tmp_path / "coca.safetensors"), device="cpu", strict=False)
    with pytest.raises(VitcliError, match="text tower has a part vitcli cannot build .*cls_emb"):
        model.embed_text("a cat")


def test_classify_reports_truncated_labels(open_clip_causal) -> None:
    folder, _ = open_clip_causal
    long = "a " * 100 + "cat"
    result = vitcli.load_model(str(folder), device="cpu").classify(pixels(64, 8, count=1)[0], labels=["a cat", long],
                                                                   size=64, fit="strict")
    assert result.document["truncated"] == [long] and result.probs.shape == (2,)
