"""Our models as lists of blocks with logical addresses: what the key tables of each format are written against.

The walks mirror the constructors (ldm/autoencoder/model.py, ldm/latent_diffusion/unet.py,
ldm/conditioning/encoders.py) and give every block the index variables a format may
need: `level` (resolution level from the input), `j` (block within the level), `k`
(the level's position in execution order, lowest resolution first for decoders), `n`
(our index in the UNet's input/output block lists), `p` (position inside that block).
"""

from __future__ import annotations

from ldm.autoencoder.config import AutoencoderConfig
from ldm.conditioning.config import ConditioningConfig
from ldm.interchange.mapping import Block
from ldm.latent_diffusion.config import UNetConfig


def _coder_mid(coder: str, mid_attn: bool) -> list[Block]:
    mid = [Block("ae_res", f"{coder}.mid.0", "mid.res0", {"coder": coder})]
    if mid_attn:
        mid.append(Block("ae_attn", f"{coder}.mid.1", "mid.attn", {"coder": coder}))
    return [*mid, Block("ae_res", f"{coder}.mid.2", "mid.res1", {"coder": coder})]


def _coder_ends(coder: str) -> list[Block]:
    return [Block("param", f"{coder}.norm_out", "norm_out", {"coder": coder}),
            Block("param", f"{coder}.conv_out", "conv_out", {"coder": coder})]


def autoencoder_blocks(cfg: AutoencoderConfig) -> list[Block]:
    """The first stage: encoder, decoder, quant convs and (VQ) the codebook."""
    blocks = [Block("param", "encoder.conv_in", "conv_in", {"coder": "encoder"})]
    for level in range(cfg.num_levels):
        pos = 0
        for j in range(cfg.num_res_blocks):
            where = {"level": level, "j": j}
            blocks.append(Block("ae_res", f"encoder.down.{level}.{pos}", "enc.res", where))
            pos += 1
            if level in cfg.attn_levels:
                blocks.append(Block("ae_attn", f"encoder.down.{level}.{pos}", "enc.attn", where))
                pos += 1
        if level < cfg.num_levels - 1:
            blocks.append(Block("param", f"encoder.down.{level}.{pos}.conv", "enc.sample", {"level": level}))
    blocks += _coder_mid("encoder", cfg.mid_attn) + _coder_ends("encoder")
    blocks += [Block("param", "decoder.conv_in", "conv_in", {"coder": "decoder"})] + _coder_mid("decoder", cfg.mid_attn)
    for k, level in enumerate(reversed(range(cfg.num_levels))):
        pos = 0
        for j in range(cfg.num_res_blocks + 1):
            where = {"level": level, "k": k, "j": j}
            blocks.append(Block("ae_res", f"decoder.up.{k}.{pos}", "dec.res", where))
            pos += 1
            if level in cfg.attn_levels:
                blocks.append(Block("ae_attn", f"decoder.up.{k}.{pos}", "dec.attn", where))
                pos += 1
        if level > 0:
            blocks.append(Block("param", f"decoder.up.{k}.{pos}.conv", "dec.sample", {"level": level, "k": k}))
    blocks += _coder_ends("decoder")
    blocks += [Block("param", "quant_conv", "quant_conv"), Block("param", "post_quant_conv", "post_quant_conv")]
    if cfg.kind == "vq":
        blocks.append(Block("param", "quantizer.embedding", "codebook"))
    return blocks


def _attention_block(cfg: UNetConfig, ours: str, place: str, channels: int, where: dict[str, int]) -> list[Block]:
    heads, _ = cfg.heads_for(channels)
    if cfg.attention == "self":
        return [Block("self_attn", ours, place, where, heads)]
    blocks = [Block("transformer", ours, place, where, heads)]
    for d in range(cfg.transformer_depth):
        blocks.append(Block("transformer_block", f"{ours}.blocks.{d}", place, {**where, "d": d}, heads))
    return blocks


def _resample(cfg: UNetConfig, ours: str, place: str, where: dict[str, int], conv: str) -> list[Block]:
    if cfg.resblock_updown:
        return [Block("unet_res", ours, f"{place}_res", where)]
    return [Block("param", f"{ours}.{conv}", place, where)] if cfg.conv_resample else []


def unet_blocks(cfg: UNetConfig, prefix: str = "unet.") -> list[Block]:
    """The ablated UNet of ldm/latent_diffusion/unet.py, walked as its constructor builds it."""
    blocks = [Block("param", f"{prefix}time_embed.0", "time_1"), Block("param", f"{prefix}time_embed.2", "time_2"),
              Block("param", f"{prefix}input_blocks.0.0", "conv_in")]
    n, factor = 1, 1
    for level, mult in enumerate(cfg.channel_mult):
        for j in range(cfg.num_res_blocks):
            where = {"level": level, "j": j, "n": n}
            blocks.append(Block("unet_res", f"{prefix}input_blocks.{n}.0", "down.res", where))
            if factor in cfg.attention_resolutions:
                blocks += _attention_block(cfg, f"{prefix}input_blocks.{n}.1", "down.attn", mult * cfg.model_channels,
                                           where)
            n += 1
        if level != cfg.num_levels - 1:
            blocks += _resample(cfg, f"{prefix}input_blocks.{n}.0", "down.sample", {"level": level, "n": n}, "op")
            n, factor = n + 1, factor * 2
    top = cfg.model_channels * cfg.channel_mult[-1]
    blocks.append(Block("unet_res", f"{prefix}middle_block.0", "mid.res0"))
    if cfg.mid_attention:
        blocks += _attention_block(cfg, f"{prefix}middle_block.1", "mid.attn", top, {})
    m = 2 if cfg.mid_attention else 1
    blocks.append(Block("unet_res", f"{prefix}middle_block.{m}", "mid.res1", {"m": m}))
    n = 0
    for k, (level, mult) in enumerate(reversed(list(enumerate(cfg.channel_mult)))):
        for j in range(cfg.num_res_blocks + 1):
            where = {"level": level, "k": k, "j": j, "n": n}
            blocks.append(Block("unet_res", f"{prefix}output_blocks.{n}.0", "up.res", where))
            p = 1
            if factor in cfg.attention_resolutions:
                blocks += _attention_block(cfg, f"{prefix}output_blocks.{n}.1", "up.attn", mult * cfg.model_channels,
                                           where)
                p = 2
            if level and j == cfg.num_res_blocks:
                blocks += _resample(cfg, f"{prefix}output_blocks.{n}.{p}", "up.sample", {**where, "p": p}, "conv")
                factor //= 2
            n += 1
    return blocks + [Block("param", f"{prefix}out.0", "norm_out"), Block("param", f"{prefix}out.2", "conv_out")]


def conditioner_blocks(cfg: ConditioningConfig, prefix: str = "cond_model.") -> list[Block]:
    """tau_theta: the class embedding, the text transformer (the layout model's box transformer is the same module
    under the same names, as the reference's) or the semantic rescaler's 1x1 conv; none for unconditional and
    concat models."""
    if cfg.kind == "class":
        return [Block("param", f"{prefix}embedding", "class.embedding")]
    if cfg.kind == "semantic":
        return [Block("param", f"{prefix}channel_mapper", "semantic.channel_mapper")]
    if cfg.kind not in ("text", "layout"):
        return []
    blocks = [Block("param", f"{prefix}token_emb", "text.token_emb"), Block("param", f"{prefix}pos_emb", "text.pos_emb")]
    for i in range(cfg.depth):
        blocks.append(Block("text_block", f"{prefix}blocks.{i}", "text.block", {"i": i, "a": 2 * i, "f": 2 * i + 1},
                            cfg.heads))
    return blocks + [Block("param", f"{prefix}norm", "text.norm")]
