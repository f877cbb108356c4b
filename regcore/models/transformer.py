"""A small transformer encoder (Vaswani et al. 2017) over patches of a 1D input.

The input vector is cut into ``patch_size``-feature patches (MNIST-1D: 40 features → 10 tokens of
4), each linearly embedded and given a learned position embedding. Pre-norm blocks (attention,
then a feed-forward layer, each residual) follow; the tokens are mean-pooled into a linear head.
Attention is written out rather than taken from ``nn.MultiheadAttention`` so that its weights
pass through a ``Slot("attention")`` (attention dropout) and the token embeddings through a
``Slot("embedding")`` (embedding dropout drops whole tokens).
"""

from __future__ import annotations

import torch
from torch import nn

from regcore.models.layers import activation
from regcore.models.slots import Slot, SlotModel


class SelfAttention(nn.Module):
    def __init__(self, d_model: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.attn_slot = Slot("attention")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-2, -1) * (d // self.heads) ** -0.5
        weights = self.attn_slot(scores.softmax(dim=-1))  # [B, heads, T, T]
        out = (weights @ v).transpose(1, 2).reshape(b, t, d)
        return self.proj(out)


class EncoderBlock(nn.Module):
    def __init__(self, d_model: int, heads: int, ff: int, act: str):
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.attn = SelfAttention(d_model, heads)
        self.norm2 = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(
            nn.Linear(d_model, ff), activation(act), Slot("hidden"), nn.Linear(ff, d_model)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ff(self.norm2(x))


class Transformer(SlotModel):
    def __init__(
        self,
        in_features: int,
        out_features: int,
        patch_size: int,
        d_model: int,
        heads: int,
        layers: int,
        ff: int,
        act: str,
    ):
        super().__init__()
        if in_features % patch_size:
            raise ValueError(
                f"patch_size {patch_size} does not divide the {in_features} input features"
            )
        self.patch_size = patch_size
        tokens = in_features // patch_size
        self.input_slot = Slot("input")
        self.embed = nn.Linear(patch_size, d_model)
        self.pos = nn.Parameter(torch.zeros(1, tokens, d_model))
        nn.init.normal_(self.pos, std=0.02)
        self.embed_slot = Slot("embedding")
        self.blocks = nn.ModuleList(EncoderBlock(d_model, heads, ff, act) for _ in range(layers))
        self.norm = nn.LayerNorm(d_model)
        self.post = Slot("hidden")
        self.out = nn.Linear(d_model, out_features)

    def head(self) -> nn.Module:
        return self.out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_slot(x)
        tokens = x.view(x.shape[0], -1, self.patch_size)
        h = self.embed_slot(self.embed(tokens) + self.pos)
        for block in self.blocks:
            h = block(h)
        return self.out(self.post(self.norm(h).mean(dim=1)))
