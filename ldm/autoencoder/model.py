"""Encoder E, decoder D and the KL/VQ autoencoder around them (Sec. 3.1, Appendix F).

Legend: x the image in [-1, 1], [N x 3 x H x W]; z the latent, [N x embed_dim x
H/f x W/f]; f the downsampling factor; x_rec = D(z).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ldm.autoencoder.blocks import AttnBlock, Downsample, ResBlock, Upsample, group_norm
from ldm.autoencoder.config import AutoencoderConfig
from ldm.autoencoder.distributions import DiagonalGaussian
from ldm.autoencoder.presets import preset_config
from ldm.autoencoder.quantize import QuantizerOutput, VectorQuantizer


def _mid_block(channels: int, cfg: AutoencoderConfig) -> nn.Sequential:
    """Res block, optional attention, res block at the lowest resolution."""
    g, p = cfg.norm_groups, cfg.dropout
    attn = AttnBlock(channels, groups=g) if cfg.mid_attn else nn.Identity()
    return nn.Sequential(
        ResBlock(channels, channels, groups=g, dropout=p), attn, ResBlock(channels, channels, groups=g, dropout=p)
    )


class Encoder(nn.Module):
    """E: image [N x C_in x H x W] -> [N x (2 if KL else 1)*z_channels x H/f x W/f]."""

    def __init__(self, cfg: AutoencoderConfig) -> None:
        super().__init__()
        g, p = cfg.norm_groups, cfg.dropout
        self.conv_in = nn.Conv2d(cfg.in_channels, cfg.ch, 3, padding=1)
        channels = cfg.ch
        self.down = nn.ModuleList()
        for level, mult in enumerate(cfg.ch_mult):
            layers: list[nn.Module] = []
            for _ in range(cfg.num_res_blocks):
                layers.append(ResBlock(channels, cfg.ch * mult, groups=g, dropout=p))
                channels = cfg.ch * mult
                if level in cfg.attn_levels:
                    layers.append(AttnBlock(channels, groups=g))
            if level < cfg.num_levels - 1:
                layers.append(Downsample(channels))
            self.down.append(nn.Sequential(*layers))
        self.mid = _mid_block(channels, cfg)
        self.norm_out = group_norm(channels, g)
        out = 2 * cfg.z_channels if cfg.double_z else cfg.z_channels
        self.conv_out = nn.Conv2d(channels, out, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N x C_in x H x W] -> [N x C_z x H/f x W/f]."""
        h = self.conv_in(x)  # (N, ch, H, W)
        for level in self.down:
            h = level(h)  # (N, ch*mult, H/2^i, W/2^i) after level i's downsample
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))  # (N, C_z, H/f, W/f)


class Decoder(nn.Module):
    """D: latent [N x z_channels x h x w] -> image [N x C_out x f*h x f*w]."""

    def __init__(self, cfg: AutoencoderConfig) -> None:
        super().__init__()
        g, p = cfg.norm_groups, cfg.dropout
        channels = cfg.ch * cfg.ch_mult[-1]
        self.conv_in = nn.Conv2d(cfg.z_channels, channels, 3, padding=1)
        self.mid = _mid_block(channels, cfg)
        self.up = nn.ModuleList()  # in execution order: lowest resolution first
        for level in reversed(range(cfg.num_levels)):
            layers: list[nn.Module] = []
            for _ in range(cfg.num_res_blocks + 1):
                layers.append(ResBlock(channels, cfg.ch * cfg.ch_mult[level], groups=g, dropout=p))
                channels = cfg.ch * cfg.ch_mult[level]
                if level in cfg.attn_levels:
                    layers.append(AttnBlock(channels, groups=g))
            if level > 0:
                layers.append(Upsample(channels))
            self.up.append(nn.Sequential(*layers))
        self.norm_out = group_norm(channels, g)
        self.conv_out = nn.Conv2d(channels, cfg.out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """[N x z_channels x h x w] -> [N x C_out x f*h x f*w]."""
        h = self.mid(self.conv_in(z))  # (N, ch*ch_mult[-1], h, w)
        for level in self.up:
            h = level(h)  # resolution doubles after every level but the last
        return self.conv_out(F.silu(self.norm_out(h)))  # (N, C_out, f*h, f*w)


@dataclass
class AutoencoderOutput:
    """One training pass: reconstruction, regularizer and what produced it."""

    x_rec: torch.Tensor  # [N x C x H x W]
    reg_loss: torch.Tensor  # scalar: KL: batch mean of the per-sample KL sum; VQ: codebook loss
    z: torch.Tensor  # [N x embed_dim x h x w]: KL the decoded sample, VQ z before quantization
    posterior: DiagonalGaussian | None = None  # KL only
    quant: QuantizerOutput | None = None  # VQ only


class Autoencoder(nn.Module):
    """KL- or VQ-regularized autoencoder; `encode` gives what the LDM trains on."""

    def __init__(self, config: AutoencoderConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        z_ch, d = config.z_channels, config.embed_dim
        self.quantizer: VectorQuantizer | None = None
        if config.kind == "kl":
            self.quant_conv = nn.Conv2d(2 * z_ch, 2 * d, 1)
        else:
            self.quant_conv = nn.Conv2d(z_ch, d, 1)
            self.quantizer = VectorQuantizer(
                config.n_embed, d, beta=config.beta, codebook_dim=config.codebook_dim,
                l2=config.codebook_l2, ema_decay=config.codebook_ema,
            )
        self.post_quant_conv = nn.Conv2d(d, z_ch, 1)

    @property
    def downsample_factor(self) -> int:
        """Spatial factor f between image and latent."""
        return self.config.downsample_factor

    @property
    def last_layer(self) -> torch.Tensor:
        """Weight of the decoder's last conv, where the adaptive GAN weight is measured."""
        return self.decoder.conv_out.weight

    def num_parameters(self) -> int:
        """Parameters of encoder, decoder, quant convs and codebook."""
        return sum(p.numel() for p in self.parameters())

    def _check_size(self, x: torch.Tensor) -> None:
        f = self.downsample_factor
        height, width = x.shape[-2:]
        if height % f or width % f:
            raise ValueError(
                f"image size {height}x{width} (HxW) is not divisible by the autoencoder's"
                f" downsampling factor f={f}; crop or pad both sides to a multiple of {f}"
            )

    def encode(self, x: torch.Tensor) -> DiagonalGaussian | torch.Tensor:
        """x [N x C x H x W] -> KL: posterior q(z|x); VQ: z before quantization [N x D x H/f x W/f]."""
        self._check_size(x)
        moments = self.quant_conv(self.encoder(x))  # (N, 2D or D, H/f, W/f)
        if self.quantizer is None:
            return DiagonalGaussian(moments)
        return moments

    def encode_mode(self, x: torch.Tensor) -> torch.Tensor:
        """x [N x C x H x W] -> the deterministic latent z [N x D x H/f x W/f]: KL's posterior mode, VQ's z before quantization."""
        encoded = self.encode(x)
        return encoded.mode() if isinstance(encoded, DiagonalGaussian) else encoded

    def quantize(self, z: torch.Tensor) -> QuantizerOutput:
        """Nearest-code quantization of a VQ latent [N x D x h x w]."""
        if self.quantizer is None:
            raise TypeError("quantize() is for VQ autoencoders; this one is kind 'kl'")
        return self.quantizer(z)

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(z))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z [N x D x h x w] -> x_rec [N x C x f*h x f*w]; VQ quantizes z first (App. F)."""
        if self.quantizer is not None:
            z = self.quantizer(z).z_q
        return self._decode(z)

    def forward(
        self, x: torch.Tensor, *, sample_posterior: bool = True, generator: torch.Generator | None = None
    ) -> AutoencoderOutput:
        """Training pass on x [N x C x H x W]: reconstruction plus regularizer."""
        encoded = self.encode(x)
        if isinstance(encoded, DiagonalGaussian):
            z = encoded.sample(generator) if sample_posterior else encoded.mode()
            kl = encoded.kl().mean()
            return AutoencoderOutput(x_rec=self._decode(z), reg_loss=kl, z=z, posterior=encoded)
        quant = self.quantize(encoded)
        return AutoencoderOutput(x_rec=self._decode(quant.z_q), reg_loss=quant.loss, z=encoded, quant=quant)


def build_autoencoder(name_or_config: str | AutoencoderConfig) -> Autoencoder:
    """An autoencoder from a preset name (see `preset_names()`) or a config."""
    config = preset_config(name_or_config) if isinstance(name_or_config, str) else name_or_config
    if not isinstance(config, AutoencoderConfig):
        raise TypeError(f"expected a preset name or AutoencoderConfig, got {type(name_or_config).__name__}")
    return Autoencoder(config)
