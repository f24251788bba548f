"""Text tokenizers read from files, offline, each as its checkpoint's library runs it (no transformers or open_clip).

Three kinds of file, each with its library's rules:
  clip-bpe        OpenAI CLIP's byte-level BPE: `bpe_simple_vocab_16e6.txt.gz` (open_clip ships it) or a
                  `merges.txt` (Hugging Face's copy of the same merges, with `vocab.json`): open_clip's
                  SimpleTokenizer (ftfy and HTML unescaping when ftfy is installed, whitespace collapsed,
                  lower case, its regex, <start_of_text> … <end_of_text>, padded with 0)
  tokenizer.json  the `tokenizers` package: the file's own normaliser, pre-tokeniser and special tokens
                  (transformers CLIPTokenizer, Siglip2 / Gemma)
  spiece.model    `sentencepiece`, as transformers' SiglipTokenizer: big_vision's canonicalisation (lower
                  case, punctuation removed, whitespace collapsed), the text encoded behind '<unk>' whose
                  pieces are dropped (no dummy prefix), then '</s>'
Every kind then: truncated to the context as the libraries truncate (the first C ids, the last one made
the end token when the prompt ends with one), padded to the context with the pad id, and an
attention mask (1 on tokens, 0 on padding). open_clip's own clean step ('canonicalize', 'lower',
'whitespace': tokenizer_kwargs.clean in open_clip_config.json) runs before the tokenizer when the
checkpoint's library is open_clip.
"""

import gzip
import html
import json
import re
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import pairwise
from pathlib import Path

from vitcli.checkpoints.bounds import MAX_CONFIG_BYTES, read_text_capped
from vitcli.errors import VitcliError

MAX_TOKENIZER_BYTES = 64 << 20  # tokenizer.json of Gemma's 256k vocabulary is ~35 MB
TOKENIZER_FILES = ("tokenizer.json", "spiece.model", "merges.txt", "bpe_simple_vocab_16e6.txt.gz")
SPIECE_UNDERLINE = "▁"
CLIP_MERGES = 49152 - 256 - 2  # SimpleTokenizer's merges: the file's first 48,894 after its header line


@dataclass
class Tokens:
    """Prompts as the tower takes them: ids and mask (K, C) as lists, with each prompt's count before truncation."""

    ids: list[list[int]]
    mask: list[list[int]]
    counts: list[int]  # tokens of each prompt with its special tokens, before truncation
    context: int

    @property
    def truncated(self) -> list[bool]:
        return [n > self.context for n in self.counts]


# ---- clean steps (open_clip's tokenizer_kwargs.clean, big_vision's canonicalisation) -------------------------

def _basic_clean(text: str) -> str:
    """open_clip's basic_clean: ftfy's fix_text (when installed), HTML unescaped twice, stripped."""
    try:
        import ftfy

        text = ftfy.fix_text(text)
    except ImportError:  # ftfy only repairs mojibake; without it such text may tokenise differently
        pass
    return html.unescape(html.unescape(text)).strip()


def _whitespace(text: str) -> str:
    return " ".join(text.split()).strip()


def canonicalize(text: str) -> str:
    """big_vision's prompt canonicalisation as open_clip has it: '_' → ' ', punctuation removed, lower case."""
    text = text.replace("_", " ").translate(str.maketrans("", "", string.punctuation)).lower()
    return " ".join(text.split()).strip()


CLEAN: dict[str, Callable[[str], str]] = {
    "lower": lambda t: _whitespace(_basic_clean(t)).lower(),
    "whitespace": lambda t: _whitespace(_basic_clean(t)),
    "canonicalize": lambda t: canonicalize(_basic_clean(t)),
    "none": lambda t: t,
}


# ---- the tokenizers ------------------------------------------------------------------------------------------

@dataclass
class Tokenizer:
    """One tokenizer: text → ids with special tokens (`encode`), and how prompts are cut and padded."""

    kind: str  # clip-bpe, tokenizer.json, spiece.model
    path: str
    encode_ids: Callable[[str], list[int]] = field(repr=False)
    pad_id: int
    end_id: int | None  # the token a truncated prompt ends with (None: cut plainly)
    clean: str = "none"  # open_clip's clean step before the tokenizer
    lower: bool = False  # lower-case first (transformers' Siglip2Tokenizer prepends a Lowercase normaliser)
    pad_left: bool = False  # padding before the tokens (Siglip2Tokenizer's default padding side)

    def encode(self, text: str) -> list[int]:
        """The ids of one prompt with its special tokens, before truncation."""
        text = CLEAN[self.clean](text)
        return self.encode_ids(text.lower() if self.lower else text)

    def __call__(self, texts: Sequence[str], context: int) -> Tokens:
        """Prompts → ids and mask (K, context): truncated and padded as the libraries do."""
        ids, mask, counts = [], [], []
        for text in texts:
            tokens = self.encode(text)
            counts.append(len(tokens))
            if len(tokens) > context:
                end = tokens[-1]
                tokens = tokens[:context]
                if self.end_id is not None and end == self.end_id:
                    tokens[-1] = end
            pad = context - len(tokens)
            if self.pad_left:
                ids.append([self.pad_id] * pad + tokens)
                mask.append([0] * pad + [1] * len(tokens))
            else:
                ids.append(tokens + [self.pad_id] * pad)
                mask.append([1] * len(tokens) + [0] * pad)
        return Tokens(ids, mask, counts, context)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map of the 256 bytes onto printable characters (the BPE's alphabet)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = keep[:]
    extra = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(keep, (chr(c) for c in chars), strict=False))


class ClipBpe:
    """OpenAI CLIP's byte-level BPE (open_clip's SimpleTokenizer) from its merges."""

    SPECIAL = ("<start_of_text>", "<end_of_text>")

    def __init__(self, merges: list[tuple[str, str]]) -> None:
        try:
            import regex
        except ImportError:
            raise VitcliError("--tokenizer", "CLIP's BPE needs the regex package: pip install 'vitcli[text]'") from None

        self.byte_encoder = _bytes_to_unicode()
        alphabet = list(self.byte_encoder.values())
        vocab = alphabet + [c + "</w>" for c in alphabet] + ["".join(m) for m in merges] + list(self.SPECIAL)
        self.encoder = {token: i for i, token in enumerate(vocab)}
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.sot, self.eot = self.encoder[self.SPECIAL[0]], self.encoder[self.SPECIAL[1]]
        self.pattern = regex.compile("|".join(self.SPECIAL) + r"""|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|"""
                                     r"""[^\s\p{L}\p{N}]+""", regex.IGNORECASE)
        self.cache: dict[str, list[str]] = {}

    def bpe(self, token: str) -> list[str]:
        """One pre-token's BPE pieces: the lowest-ranked adjacent pair merged until none is in the table."""
        if token in self.SPECIAL:
            return [token]
        if token in self.cache:
            return self.cache[token]
        word = [*token[:-1], token[-1] + "</w>"]
        while len(word) > 1:
            pairs = set(pairwise(word))
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        self.cache[token] = word
        return word

    def __call__(self, text: str) -> list[int]:
        ids = [self.sot]
        for token in self.pattern.findall(text):
            token = "".join(self.byte_encoder[b] for b in token.encode("utf-8"))
            ids.extend(self.encoder[piece] for piece in self.bpe(token))
        return ids + [self.eot]


def _clip_merges(path: Path) -> list[tuple[str, str]]:
    """The merges of `bpe_simple_vocab_16e6.txt.gz` or a Hugging Face `merges.txt` (both: a header line first)."""
    try:
        raw = _read_capped_bytes(path)
        raw = gzip.decompress(raw) if path.name.endswith(".gz") else raw
        lines = raw.decode("utf-8").split("\n")
    except (OSError, EOFError, UnicodeDecodeError, gzip.BadGzipFile) as e:
        raise VitcliError(str(path), f"not a readable BPE merges file ({e})") from None
    merges = [tuple(line.split()) for line in lines[1:CLIP_MERGES + 1]]
    if len(merges) < CLIP_MERGES or any(len(m) != 2 for m in merges):
        raise VitcliError(str(path), f"not CLIP's BPE merges: expected {CLIP_MERGES:,} lines of two symbols")
    return merges  # type: ignore[return-value]


def _json_tokenizer(path: Path, settings: dict) -> Tokenizer:
    """tokenizer.json through the `tokenizers` package (its own normaliser and special tokens)."""
    try:
        from tokenizers import Tokenizer as HFTokenizer
    except ImportError:
        raise VitcliError(str(path), "reading tokenizer.json needs the tokenizers package: pip install tokenizers") \
            from None
    try:
        tok = HFTokenizer.from_str(read_text_capped(path, MAX_TOKENIZER_BYTES, "a tokenizer file"))
    except VitcliError:
        raise
    except Exception as e:  # noqa: BLE001 - the Rust side raises a bare Exception on a malformed file
        raise VitcliError(str(path), f"not a readable tokenizer.json ({str(e)[:120]})") from None
    tok.no_truncation()
    tok.no_padding()
    pad = _special_id(settings.get("pad_token"), tok.token_to_id) if settings.get("pad_token") else None
    eos = _special_id(settings.get("eos_token"), tok.token_to_id) if settings.get("eos_token") else None
    if pad is None:
        pad = next((i for name in ("<pad>", "<|endoftext|>", "</s>") if (i := tok.token_to_id(name)) is not None), 0)
    return Tokenizer("tokenizer.json", str(path), lambda t: tok.encode(t).ids, pad, eos)


def _special_id(token: object, lookup: Callable[[str], int | None]) -> int | None:
    """The id of a special token as tokenizer_config.json writes it (a string or {"content": …})."""
    name = token.get("content") if isinstance(token, dict) else token
    return lookup(name) if isinstance(name, str) else None


def _sentencepiece(path: Path, settings: dict) -> Tokenizer:
    """spiece.model as transformers' SiglipTokenizer runs it."""
    try:
        import sentencepiece
    except ImportError:
        raise VitcliError(str(path), "reading spiece.model needs sentencepiece: pip install 'vitcli[text]'") from None
    sp = sentencepiece.SentencePieceProcessor()
    try:
        sp.LoadFromSerializedProto(_read_capped_bytes(path))
    except (RuntimeError, OSError) as e:
        raise VitcliError(str(path), f"not a readable SentencePiece model ({str(e)[:120]})") from None
    lower = settings.get("do_lower_case", True) is not False
    unk = str(_special_name(settings.get("unk_token")) or "<unk>")
    eos = sp.piece_to_id(str(_special_name(settings.get("eos_token")) or "</s>"))
    pad = sp.piece_to_id(str(_special_name(settings.get("pad_token")) or "</s>"))
    unk_length = len(sp.encode(unk, out_type=str))

    def encode(text: str) -> list[int]:
        text = SPIECE_UNDERLINE + text.replace(SPIECE_UNDERLINE, " ")  # transformers' tokenize, before canonicalising
        text = text.lower() if lower else text
        text = re.sub(r"\s+", " ", text.translate(str.maketrans("", "", string.punctuation))).strip()
        pieces = sp.encode(unk + text, out_type=str)
        pieces = pieces[unk_length:] if len(pieces) >= unk_length else pieces
        ids = [sp.piece_to_id(p) for p in pieces]
        return ids if ids and ids[-1] == eos else ids + [eos]

    return Tokenizer("spiece.model", str(path), encode, pad, eos)


def _special_name(token: object) -> object:
    return token.get("content") if isinstance(token, dict) else token


def _read_capped_bytes(path: Path) -> bytes:
    """A regular file's bytes, refused when larger than any tokenizer (or a device, pipe or socket)."""
    import stat

    st = path.stat()
    if not stat.S_ISREG(st.st_mode):
        raise VitcliError(str(path), "not a regular file: a device, pipe or socket cannot hold a tokenizer")
    if st.st_size > MAX_TOKENIZER_BYTES:
        raise VitcliError(str(path), f"is {st.st_size:,} bytes, larger than any tokenizer")
    return path.read_bytes()


def tokenizer_settings(folder: Path) -> dict:
    """tokenizer_config.json beside the tokenizer (pad, eos and unk tokens, do_lower_case), {} without one."""
    f = folder / "tokenizer_config.json"
    if not f.is_file():
        return {}
    try:
        value = json.loads(read_text_capped(f, MAX_CONFIG_BYTES, "a config file"))
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def find_tokenizer_file(folder: Path, prefer: Sequence[str] = TOKENIZER_FILES) -> Path | None:
    """The first tokenizer file in `folder`, in the order `prefer` gives."""
    return next((folder / name for name in prefer if (folder / name).is_file()), None)


def load_tokenizer(path: str | Path, clean: str = "none", prefer: Sequence[str] = TOKENIZER_FILES) -> Tokenizer:
    """A tokenizer from a file (or the first one a folder holds), with open_clip's `clean` step before it."""
    p = Path(path)
    if not p.exists():
        raise VitcliError("--tokenizer", f"{p}: no such file or folder")
    folder = p if p.is_dir() else p.parent
    if p.is_dir():
        found = find_tokenizer_file(p, prefer)
        if found is None:
            raise VitcliError("--tokenizer", f"{p} holds no tokenizer ({', '.join(TOKENIZER_FILES)})")
        p = found
    tok = _load_file(p, tokenizer_settings(folder))
    tok.clean = clean
    return tok


def _load_file(p: Path, settings: dict) -> Tokenizer:
    """One tokenizer file by its name (or, for CLIP's BPE, any .gz / merges text)."""
    if p.name.endswith(".json"):
        return _json_tokenizer(p, settings)
    if p.name.endswith(".model"):
        return _sentencepiece(p, settings)
    if p.name.endswith((".gz", ".txt")):
        bpe = _clip_bpe(str(p))
        return Tokenizer("clip-bpe", str(p), bpe, 0, bpe.eot)
    raise VitcliError(str(p), "not a tokenizer vitcli reads: tokenizer.json, spiece.model, merges.txt or "
                      "bpe_simple_vocab_16e6.txt.gz")


@lru_cache(maxsize=4)
def _clip_bpe(path: str) -> ClipBpe:
    return ClipBpe(_clip_merges(Path(path)))


__all__ = [
    "CLEAN",
    "TOKENIZER_FILES",
    "ClipBpe",
    "Tokenizer",
    "Tokens",
    "canonicalize",
    "find_tokenizer_file",
    "load_tokenizer",
    "tokenizer_settings",
]
