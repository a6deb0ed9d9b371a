"""Reference models for FLOP tests, each with its FLOPs derived by hand (2 FLOPs per multiply-add).

Conventions (as in lightning_greenai.flops.formulas): dense products only; bias, norms, activations, softmax and
embedding lookups are free. Backward = the products autograd really runs: dW for every trainable weight, dX for
every input that needs a gradient (the model input needs none).
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn


class MLP(nn.Module):
    def __init__(self, dims=(64, 128, 96, 10)):
        super().__init__()
        self.dims = dims
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(dims))

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x

    def analytic(self, batch: int) -> tuple[int, int]:
        pairs = list(zip(self.dims[:-1], self.dims[1:], strict=False))
        forward = sum(2 * batch * a * b for a, b in pairs)
        # first layer: weight gradient only (its input is data); the others: weight and input gradients
        backward = 2 * batch * pairs[0][0] * pairs[0][1] + sum(4 * batch * a * b for a, b in pairs[1:])
        return forward, backward


class Block(nn.Module):
    def __init__(self, d: int, heads: int, sdpa: bool):
        super().__init__()
        self.heads, self.sdpa = heads, sdpa
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def attention(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=-1)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        if self.sdpa:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            scores = (q @ k.transpose(-2, -1)) / (d // self.heads) ** 0.5
            mask = torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1)
            y = scores.masked_fill(mask, float("-inf")).softmax(-1) @ v
        return self.proj(y.transpose(1, 2).reshape(b, t, d))

    def forward(self, x):
        x = x + self.attention(self.ln1(x))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class GPT(nn.Module):
    def __init__(self, vocab=256, d=64, heads=4, layers=2, block=32, sdpa=True):
        super().__init__()
        self.vocab, self.d, self.n_layers = vocab, d, layers
        self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(block, d)
        self.blocks = nn.ModuleList(Block(d, heads, sdpa) for _ in range(layers))
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)

    def forward(self, idx):
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1], device=idx.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln(x))

    def analytic(self, batch: int, t: int) -> tuple[int, int]:
        bt, d = batch * t, self.d
        linear_per_layer = 2 * bt * (d * 3 * d + d * d + d * 4 * d + 4 * d * d)  # qkv, proj, fc1, fc2 = 24 BT d^2
        attention_per_layer = 2 * 2 * batch * t * t * d  # Q K^T and P V over the full T x T, all heads
        head = 2 * bt * d * self.vocab
        forward = self.n_layers * (linear_per_layer + attention_per_layer) + head
        # every activation needs a gradient (embeddings train): each product has a dW and a dX twin,
        # attention's backward is four products (dV, dP, dQ, dK), twice its forward
        backward = 2 * forward
        return forward, backward


class ResNetish(nn.Module):
    def __init__(self, c=16, classes=10):
        super().__init__()
        self.c = c
        self.stem = nn.Conv2d(3, c, 3, padding=1, bias=False)
        self.b1 = nn.ModuleList([nn.Conv2d(c, c, 3, padding=1, bias=False), nn.Conv2d(c, c, 3, padding=1, bias=False)])
        self.down = nn.Conv2d(c, 2 * c, 3, stride=2, padding=1, bias=False)
        self.b2 = nn.Conv2d(2 * c, 2 * c, 3, padding=1, bias=False)
        self.short = nn.Conv2d(c, 2 * c, 1, stride=2, bias=False)
        self.bn = nn.ModuleList(nn.BatchNorm2d(n) for n in (c, c, c, 2 * c, 2 * c))
        self.fc = nn.Linear(2 * c, classes)
        self.classes = classes

    def forward(self, x):
        x = F.relu(self.bn[0](self.stem(x)))
        y = F.relu(self.bn[1](self.b1[0](x)))
        x = F.relu(x + self.bn[2](self.b1[1](y)))
        y = F.relu(self.bn[3](self.down(x)))
        x = F.relu(self.short(x) + self.bn[4](self.b2(y)))
        return self.fc(x.mean(dim=(2, 3)))

    def analytic(self, batch: int, h: int, w: int) -> tuple[int, int]:
        c = self.c

        def conv(cin, cout, k, hout, wout):
            return 2 * batch * cout * hout * wout * cin * k * k

        h2, w2 = (h + 1) // 2, (w + 1) // 2
        stem = conv(3, c, 3, h, w)
        rest = (
            2 * conv(c, c, 3, h, w)
            + conv(c, 2 * c, 3, h2, w2)
            + conv(2 * c, 2 * c, 3, h2, w2)
            + conv(c, 2 * c, 1, h2, w2)
        )
        fc = 2 * batch * 2 * c * self.classes
        forward = stem + rest + fc
        # the stem's input is data: weight gradient only; every other conv and the fc: weight and input gradients
        backward = stem + 2 * rest + 2 * fc
        return forward, backward


class RNNLM(nn.Module):
    def __init__(self, kind="lstm", vocab=200, emb=32, hidden=48, layers=2):
        super().__init__()
        self.kind, self.vocab, self.emb, self.hidden, self.layers = kind, vocab, emb, hidden, layers
        self.embed = nn.Embedding(vocab, emb)
        rnn = nn.LSTM if kind == "lstm" else nn.GRU
        self.rnn = rnn(emb, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, idx):
        out, _ = self.rnn(self.embed(idx))
        return self.head(out)

    def analytic(self, batch: int, t: int, fused: bool | None = None) -> tuple[int, int]:
        """``fused``: whether the backward runs as one fused kernel per layer (CPU: mkldnn for LSTM only;
        CUDA: cuDNN for both); default: what the CPU runs."""
        fused = self.kind == "lstm" if fused is None else fused
        gates = 4 if self.kind == "lstm" else 3
        g = gates * self.hidden
        inputs = [self.emb] + [self.hidden] * (self.layers - 1)
        rnn = sum(2 * batch * t * g * (i + self.hidden) for i in inputs)  # input and recurrent gate products
        head = 2 * batch * t * self.hidden * self.vocab
        forward = rnn + head
        if fused:
            # a fused kernel (mkldnn, cuDNN) computes the input, hidden and weight gradients of every step of a
            # layer (the first step's hidden gradient too): twice the layer's forward products
            backward = 2 * rnn + 2 * head
        else:
            # unfused (the GRU on CPU): one product per gate matrix per step; the initial hidden state is a constant
            # zero tensor, so the first step of each layer needs no gradient through W_hh into h0
            skipped = self.layers * 2 * batch * g * self.hidden
            backward = 2 * rnn - skipped + 2 * head
        return forward, backward
