"""Text tokenizers by `conditioning.tokenizer`: bert-base-uncased's, or learned from captions and cached."""

from __future__ import annotations

import dataclasses
import random

import pytest
import torch

from ldm.conditioning import ConditioningConfig, build_tokenizer, captions_key, tokenize
from ldm.conditioning import tokenizer as tokenizer_module
from ldm.latent_diffusion import (
    LatentDiffusionModel,
    LDMCard,
    LDMConfig,
    load_ldm,
    save_ldm,
)
from ldm.latent_diffusion.presets import preset_config

pytestmark = pytest.mark.usefixtures("one_thread")

BERT = ConditioningConfig(kind="text", tokenizer="bert")
LEARNED = ConditioningConfig(kind="text", tokenizer="learned", vocab_size=60, max_seq_len=16, dim=16, depth=1)


def _captions(seed: int = 0, n: int = 400) -> list[str]:
    # Uniformly drawn words: many merges tie, where an unordered trainer drifts from run to run.
    rng = random.Random(seed)
    words = ["cat", "dog", "red", "blue", "sitting", "photo", "street", "snow", "a", "the", "on", "of", "lake"]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(3, 9))) for _ in range(n)]


def test_bert_kind_gives_bert_base_uncased_ids(tmp_path):
    tok = build_tokenizer(BERT, ["captions play no part"], tmp_path)
    assert len(tok) == 30522
    ids = tokenize(tok, ["a photo of a cat", "A Photo of a CAT"], max_length=9)
    assert ids[0].tolist() == [101, 1037, 6302, 1997, 1037, 4937, 102, 0, 0]  # [CLS] a photo of a cat [SEP] [PAD]
    assert torch.equal(ids[0], ids[1])  # uncased
    assert not any(tmp_path.iterdir())  # nothing learned, nothing cached


def test_bert_kind_refuses_another_vocab_size_naming_the_key():
    with pytest.raises(ValueError, match=r"conditioning\.vocab_size .*30522.*conditioning\.tokenizer"):
        ConditioningConfig(kind="text", tokenizer="bert", vocab_size=1000)
    with pytest.raises(ValueError, match=r"conditioning\.vocab_size"):
        ConditioningConfig.from_dict({"kind": "text", "tokenizer": "bert", "vocab_size": 1000})
    with pytest.raises(ValueError, match=r"conditioning\.tokenizer must be one of"):
        ConditioningConfig.from_dict({"kind": "text", "tokenizer": "gpt2"})
    with pytest.raises(ValueError, match="only 'text'"):
        build_tokenizer(ConditioningConfig(kind="class", n_classes=3), [], ".")


def test_config_json_without_the_key_loads_as_learned():
    plain = preset_config("tiny-txt").to_dict()
    plain["conditioning"].pop("tokenizer", None)  # a config.json written before the key existed
    assert LDMConfig.from_dict(plain).conditioning.tokenizer == "learned"
    assert ConditioningConfig.from_dict({"kind": "text", "vocab_size": 1000}).tokenizer == "learned"


def test_learned_kind_is_identical_across_calls_and_cache_hits(tmp_path, monkeypatch):
    caps = _captions()
    first = build_tokenizer(LEARNED, caps, tmp_path / "a")
    (folder,) = (tmp_path / "a").iterdir()
    assert folder.name.startswith("wordpiece-60-") and (folder / "vocab.txt").is_file()
    fresh = build_tokenizer(LEARNED, list(reversed(caps)), tmp_path / "b")  # trained again, captions reordered
    assert fresh.get_vocab() == first.get_vocab()
    assert len(first) == 60 and "cat" in first.get_vocab()

    def no_training(*_: object) -> None:
        raise AssertionError("a cache hit must not train")

    monkeypatch.setattr(tokenizer_module, "train_wordpiece", no_training)
    hit = build_tokenizer(LEARNED, caps, tmp_path / "a")
    assert hit.get_vocab() == first.get_vocab()
    text = ["the red dog sitting in the snow", ""]
    assert torch.equal(tokenize(hit, text, 16), tokenize(first, text, 16))


def test_cache_key_changes_with_captions_and_size(tmp_path):
    caps = _captions()
    key = captions_key(caps, 120)
    assert key == captions_key(list(reversed(caps)), 120)  # the vocabulary does not depend on order either
    assert key != captions_key(caps + ["a dog"], 120) and key != captions_key(caps, 121)
    assert key != captions_key(caps[:-1] + [caps[-1] + " "], 120)
    build_tokenizer(LEARNED, caps, tmp_path)
    build_tokenizer(LEARNED, _captions(seed=1), tmp_path)
    assert len(list(tmp_path.iterdir())) == 2


@pytest.mark.parametrize("kind", ["bert", "learned"])
def test_model_folder_keeps_either_tokenizer(tmp_path, kind):
    base = preset_config("tiny-txt")
    vocab = 30522 if kind == "bert" else 200
    cond = dataclasses.replace(base.conditioning, tokenizer=kind, vocab_size=vocab, dim=16, depth=1, heads=2,
                               dim_head=8, max_seq_len=12)
    config = dataclasses.replace(base, conditioning=cond, unet=dataclasses.replace(base.unet, context_dim=16))
    tok = build_tokenizer(cond, _captions(), tmp_path / "cache")
    save_ldm(tmp_path / "model", LatentDiffusionModel(config), LDMCard(model=config, preset="tiny-txt"), tok)
    loaded = load_ldm(tmp_path / "model")
    assert loaded.card.model.conditioning.tokenizer == kind
    assert loaded.tokenizer.get_vocab() == tok.get_vocab()
    prompts = ["a photo of a cat", "snow on the lake"]
    assert torch.equal(tokenize(loaded.tokenizer, prompts, 12), tokenize(tok, prompts, 12))
