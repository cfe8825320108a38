"""Conditioning encoders, WordPiece tokenizers and classifier-free-guidance dropout (ldm.conditioning)."""

from __future__ import annotations

import random

import pytest
import torch

from ldm.conditioning import (
    SPECIAL_TOKENS,
    ClassEmbedder,
    ConcatConditioner,
    ConditioningConfig,
    TextTransformer,
    build_conditioner,
    drop_class_labels,
    drop_prompts,
    learn_wordpiece_vocab,
    load_tokenizer,
    save_tokenizer,
    tokenize,
    train_wordpiece,
)
from ldm.latent_diffusion import build_ldm


pytestmark = pytest.mark.usefixtures("one_thread")


def _captions(seed: int = 0, n: int = 600) -> list[str]:
    # Uniformly drawn words: many merge candidates tie, which is where an unordered trainer drifts.
    rng = random.Random(seed)
    words = ["cat", "dog", "red", "blue", "sitting", "running", "photo", "street", "snow", "playing", "a",
             "the", "on", "in", "of", "bright", "sunny", "mountain", "lake", "forest", "tree", "house"]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(3, 10))) for _ in range(n)]


# -- class embedder and CFG dropout ------------------------------------------

def test_class_embedder_gives_one_token_and_has_a_null_class():
    emb = ClassEmbedder(n_classes=10, embed_dim=512)
    assert emb.embedding.num_embeddings == 11 and emb.null_class == 10
    tokens = emb(torch.tensor([0, 9, 10]))
    assert tokens.shape == (3, 1, 512)
    assert not torch.allclose(tokens[2], tokens[0])  # the null class is its own learned token
    with pytest.raises(ValueError, match="0..10"):
        emb(torch.tensor([11]))


def test_class_dropout_rate_and_reproducibility():
    labels = torch.arange(20000) % 7
    dropped = drop_class_labels(labels, 0.1, null_class=7, generator=torch.Generator().manual_seed(0))
    mask = dropped == 7
    assert mask.float().mean().item() == pytest.approx(0.1, abs=0.01)  # 3 sigma ~ 0.0064
    assert torch.equal(dropped[~mask], labels[~mask])
    again = drop_class_labels(labels, 0.1, null_class=7, generator=torch.Generator().manual_seed(0))
    other = drop_class_labels(labels, 0.1, null_class=7, generator=torch.Generator().manual_seed(1))
    assert torch.equal(dropped, again) and not torch.equal(dropped, other)
    assert torch.equal(drop_class_labels(labels, 0.0, 7, torch.Generator().manual_seed(0)), labels)


def test_prompt_dropout_rate():
    prompts = [f"prompt {i}" for i in range(5000)]
    dropped = drop_prompts(prompts, 0.2, torch.Generator().manual_seed(0))
    empty = [p == "" for p in dropped]
    assert sum(empty) / len(prompts) == pytest.approx(0.2, abs=0.02)
    assert all(d == p for d, p, e in zip(dropped, prompts, empty) if not e)


# -- tokenizers ----------------------------------------------------------------

def test_wordpiece_training_is_deterministic_and_bert_shaped():
    caps = _captions()
    vocab_a = learn_wordpiece_vocab(caps, 70)
    vocab_b = learn_wordpiece_vocab(list(reversed(caps)), 70)  # order of captions must not matter
    assert vocab_a == vocab_b
    assert len(vocab_a) == 70 and len(set(vocab_a)) == 70
    assert tuple(vocab_a[:5]) == SPECIAL_TOKENS  # [PAD]=0 as in bert-base-uncased
    assert "cat" in vocab_a and any(t.startswith("##") for t in vocab_a)
    assert learn_wordpiece_vocab(_captions(seed=1), 70) != vocab_a
    # Once every word is one token there is nothing left to merge: the vocabulary stops short.
    full = learn_wordpiece_vocab(caps, 1000)
    assert len(full) < 1000 and full[:70] == vocab_a


def test_trained_tokenizer_encodes_uncased_and_pads_to_length():
    tok = train_wordpiece(_captions(), 120)
    ids = tokenize(tok, ["A Cat on the STREET", ""], max_length=16)
    assert ids.shape == (2, 16) and ids.dtype == torch.long
    assert ids[0, 0] == tok.cls_token_id and ids[1].tolist()[:2] == [tok.cls_token_id, tok.sep_token_id]
    assert (ids[1, 2:] == tok.pad_token_id).all()
    assert torch.equal(ids[0], tokenize(tok, ["a cat on the street"], 16)[0])
    assert tok.decode(ids[0], skip_special_tokens=True) == "a cat on the street"
    long = tokenize(tok, [" ".join(["cat"] * 100)], max_length=16)
    assert long.shape == (1, 16) and long[0, -1] == tok.sep_token_id  # truncated, still closed


def test_tokenizer_save_load_round_trip_and_vocab_txt_only_folder(tmp_path):
    tok = train_wordpiece(_captions(), 120)
    folder = save_tokenizer(tok, tmp_path / "tok")
    assert (folder / "vocab.txt").is_file() and (folder / "tokenizer.json").is_file()
    loaded = load_tokenizer(folder)
    assert type(loaded).__name__ == type(tok).__name__ and loaded.get_vocab() == tok.get_vocab()
    text = ["the red dog playing in the snow", "a sunny lake"]
    assert torch.equal(tokenize(loaded, text, 20), tokenize(tok, text, 20))
    # A folder with only a BERT vocab.txt (how a real bert-base-uncased vocabulary arrives).
    only_vocab = tmp_path / "bert"
    only_vocab.mkdir()
    (only_vocab / "vocab.txt").write_text((folder / "vocab.txt").read_text(encoding="utf-8"), encoding="utf-8")
    from_vocab = load_tokenizer(only_vocab)
    assert torch.equal(tokenize(from_vocab, text, 20), tokenize(tok, text, 20))
    with pytest.raises(FileNotFoundError, match="vocab.txt"):
        load_tokenizer(tmp_path / "missing")


# -- text transformer ---------------------------------------------------------

def test_text_transformer_shapes_and_position_sensitivity():
    torch.manual_seed(0)
    enc = TextTransformer(vocab_size=50, max_seq_len=12, dim=32, depth=2, heads=4, dim_head=8)
    tokens = torch.randint(0, 50, (3, 12), generator=torch.Generator().manual_seed(0))
    out = enc(tokens)
    assert out.shape == (3, 12, 32)
    swapped = tokens.clone()
    swapped[:, [0, 1]] = tokens[:, [1, 0]]
    assert not torch.allclose(enc(swapped)[:, 2:], out[:, 2:], atol=1e-5)  # learned positions matter
    with pytest.raises(ValueError, match="max_seq_len"):
        enc(torch.zeros(1, 13, dtype=torch.long))
    with pytest.raises(ValueError, match="vocabulary"):
        enc(torch.full((1, 4), 50))


def test_text_transformer_parameter_count_matches_eq_18_to_24():
    dim, depth, vocab, seq, inner = 64, 3, 100, 10, 8 * 16
    enc = TextTransformer(vocab, seq, dim, depth, heads=8, dim_head=16)
    per_block = 2 * 2 * dim + 3 * dim * inner + inner * dim + dim + (dim * 4 * dim + 4 * dim) + (4 * dim * dim + dim)
    expected = vocab * dim + seq * dim + depth * per_block + 2 * dim
    assert sum(p.numel() for p in enc.parameters()) == expected


# -- concat conditioning and the LDM wrapper -----------------------------------

def test_concat_conditioner_channels_and_resize():
    cond = ConcatConditioner(("lr",), (3,))
    lr = torch.rand(2, 3, 8, 12) * 2 - 1
    out = cond({"lr": lr}, size=(16, 24))
    assert out.shape == (2, 3, 16, 24) and cond.out_channels == 3
    assert torch.equal(cond({"lr": lr}, size=(8, 12)), lr)  # already at latent size: untouched
    inpaint = ConcatConditioner(("mask", "masked"), (1, 3))
    out = inpaint({"mask": torch.ones(2, 1, 16, 24), "masked": torch.zeros(2, 3, 16, 24)}, (16, 24))
    assert out.shape == (2, 4, 16, 24)
    with pytest.raises(ValueError, match="missing"):
        inpaint({"mask": torch.ones(2, 1, 16, 24)}, (16, 24))
    with pytest.raises(ValueError, match=r"\[N x 3 x H x W\]"):
        cond({"lr": torch.zeros(2, 1, 8, 8)}, (8, 8))


def test_sr_model_input_channels_are_latent_plus_lr():
    model = build_ldm("tiny-sr")
    cfg = model.config
    assert cfg.unet.in_channels == cfg.latent_channels + cfg.conditioning.extra_in_channels == 6
    z = torch.randn(2, 3, 16, 24)
    out = model(z, torch.tensor([1, 2]), {"lr": torch.zeros(2, 3, 16, 24)})
    assert out.shape == z.shape


def test_build_conditioner_by_kind_and_config_validation():
    assert build_conditioner(ConditioningConfig()) is None
    assert isinstance(build_conditioner(ConditioningConfig(kind="class", n_classes=3)), ClassEmbedder)
    assert ConditioningConfig(kind="text", dim=64).context_dim == 64
    with pytest.raises(ValueError, match="n_classes"):
        ConditioningConfig(kind="class")
    with pytest.raises(ValueError, match="conditioning.kind"):
        ConditioningConfig(kind="keypoints")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="concat_keys"):
        ConditioningConfig(kind="concat", concat_keys=("lr", "mask"), concat_channels=(3,))


def test_class_model_null_condition():
    model = build_ldm("tiny-cond")
    null = model.null_condition(4, "cpu")
    assert null.tolist() == [16] * 4
    with pytest.raises(ValueError, match="null label"):
        build_ldm("tiny-sr").null_condition(1, "cpu")


@pytest.mark.slow
def test_wordpiece_vocabulary_does_not_depend_on_hash_seeds(tmp_path):
    """Separate interpreters with different PYTHONHASHSEED values learn the same vocabulary."""
    import os
    import subprocess
    import sys

    captions = tmp_path / "captions.txt"
    captions.write_text("\n".join(_captions()), encoding="utf-8")
    code = ("import sys; from ldm.conditioning.tokenizer import learn_wordpiece_vocab; "
            "print(learn_wordpiece_vocab(open(sys.argv[1]).read().splitlines(), 70))")
    outs = [
        subprocess.run([sys.executable, "-c", code, str(captions)], capture_output=True, text=True, check=True,
                       env={**os.environ, "PYTHONHASHSEED": seed}).stdout
        for seed in ("1", "2")
    ]
    assert outs[0] == outs[1] == f"{learn_wordpiece_vocab(_captions(), 70)}\n"
