"""BERT WordPiece tokenizers for the text conditioner (D.2.1), offline.

Two ways to get one: train a vocabulary on the dataset's captions
(`train_wordpiece`), or load a folder that holds a `vocab.txt` (a real
bert-base-uncased vocabulary works) or a saved tokenizer (`load_tokenizer`).

Why not `tokenizers.trainers.WordPieceTrainer`: measured here, it returns a
different vocabulary from run to run on the same captions. Its merge ties and
its alphabet ids follow Rust's randomly seeded hash maps. The learner below does
the same BPE-style merges, with the BERT normalizer and pre-tokenizer from
`tokenizers`, and breaks every tie by string order, so it is deterministic.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path

import torch
from tokenizers import normalizers, pre_tokenizers
from torch import Tensor
from transformers import BertTokenizerFast

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # BERT's, in bert-base-uncased's id order
CONTINUATION = "##"  # WordPiece marks a piece that continues a word
MAX_WORD_CHARS = 100  # BERT maps longer words to [UNK]


def _word_counts(captions: Iterable[str]) -> Counter[str]:
    """Words after BERT's uncased normalisation and pre-tokenisation, with their counts."""
    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    counts: Counter[str] = Counter()
    for caption in captions:
        words = pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(caption))
        counts.update(w for w, _ in words if len(w) <= MAX_WORD_CHARS)
    return counts


def _merge(a: str, b: str) -> str:
    return a + b.removeprefix(CONTINUATION)


def learn_wordpiece_vocab(captions: Iterable[str], vocab_size: int) -> list[str]:
    """A WordPiece vocabulary (specials, alphabet, then merges in order), deterministic for given captions."""
    counts = _word_counts(captions)
    words = sorted(counts)  # fixed order: results cannot depend on hashing
    symbols = [[w[0]] + [CONTINUATION + c for c in w[1:]] for w in words]
    freq = [counts[w] for w in words]
    alphabet = sorted({s for word in symbols for s in word})
    vocab = list(SPECIAL_TOKENS) + [s for s in alphabet if s not in SPECIAL_TOKENS]
    if vocab_size < len(vocab):
        raise ValueError(
            f"train_wordpiece: vocab_size {vocab_size} is below the {len(vocab)} special tokens and"
            " characters of these captions; raise it"
        )
    pair_count: Counter[tuple[str, str]] = Counter()
    where: dict[tuple[str, str], set[int]] = defaultdict(set)
    for i, word in enumerate(symbols):
        for pair in zip(word, word[1:]):
            pair_count[pair] += freq[i]
            where[pair].add(i)
    heap = [(-c, pair) for pair, c in pair_count.items()]
    heapq.heapify(heap)  # most frequent first, ties by string order
    known = set(vocab)
    while len(vocab) < vocab_size and heap:
        neg, pair = heapq.heappop(heap)
        if pair_count.get(pair, 0) != -neg or -neg == 0:
            continue  # stale entry
        new = _merge(*pair)
        if new not in known:
            vocab.append(new)
            known.add(new)
        touched: set[tuple[str, str]] = set()
        for i in sorted(where.pop(pair, ())):
            old = symbols[i]
            for p in zip(old, old[1:]):
                pair_count[p] -= freq[i]
                touched.add(p)
            merged: list[str] = []
            j = 0
            while j < len(old):
                if j + 1 < len(old) and (old[j], old[j + 1]) == pair:
                    merged.append(new)
                    j += 2
                else:
                    merged.append(old[j])
                    j += 1
            symbols[i] = merged
            for p in zip(merged, merged[1:]):
                pair_count[p] += freq[i]
                where[p].add(i)
                touched.add(p)
        pair_count.pop(pair, None)
        for p in sorted(touched):
            if p != pair and pair_count[p] > 0:
                heapq.heappush(heap, (-pair_count[p], p))
    return vocab


def train_wordpiece(captions: Iterable[str], vocab_size: int) -> BertTokenizerFast:
    """An uncased BERT WordPiece tokenizer trained on the captions; same captions, same vocabulary."""
    vocab = learn_wordpiece_vocab(captions, vocab_size)
    return BertTokenizerFast(vocab={token: i for i, token in enumerate(vocab)}, do_lower_case=True)


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
        return BertTokenizerFast.from_pretrained(str(folder))
    if (folder / "vocab.txt").is_file():
        return BertTokenizerFast(vocab=str(folder / "vocab.txt"), do_lower_case=True)
    raise FileNotFoundError(f"{folder}: no tokenizer.json or vocab.txt; train one with train_wordpiece or copy a BERT vocab.txt there")


def tokenize(tokenizer: BertTokenizerFast, prompts: list[str], max_length: int) -> Tensor:
    """Token ids [N x max_length] (long), padded and truncated as the reference BERTTokenizer does."""
    encoded = tokenizer(list(prompts), padding="max_length", truncation=True, max_length=max_length,
                        return_attention_mask=False, return_token_type_ids=False)
    return torch.tensor(encoded["input_ids"], dtype=torch.long)
