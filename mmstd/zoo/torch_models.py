"""The zoo's PyTorch models, built from a card: its inputs pick the encoders, its labels the head.

Encoders by input (rank and dtype, whatever the modality is called):

- rank 4 float, channels last or first (``[batch, H, W, C]``): two strided 3x3 convolutions, then
  (fixed H and W) flatten in channels-last order and a dense layer, which keeps where things are,
  or (named H or W axes) global average pooling (image);
- rank 2 integer (``[batch, tokens]``): an embedding (``value_range`` high + 1 ids) and an LSTM,
  last hidden state (text);
- rank 3 float (``[batch, frames, features]``): two strided 1-D convolutions over time and
  global average pooling (audio);
- rank 2 float: one dense layer (tabular).

Every encoder yields ``FEATURES`` values, so named (dynamic) axes other than the batch work too.
``forward`` takes the inputs in the card's order and returns the card's single output.
The Keras twins live in ``keras_models``; both share the card, hence the graph's inputs/outputs.
"""
from __future__ import annotations

import re

import torch
from torch import nn

from mmstd.card import ModelCard, TensorSpec
from mmstd.zoo.spec import FEATURES, WIDTH, ZooSpec, encoder_kind, zoo_spec
from mmstd.zoo.spec import image_grid as _spatial


class ImageEncoder(nn.Module):
    """Two strided 3x3 convolutions (8, 16 channels), ReLU, then a spatial head.

    With fixed height and width: flatten (channels last, as Keras does) and Dense(FEATURES) + ReLU,
    so the features keep where the strokes are. With a named H or W axis: global average pooling.
    """

    def __init__(self, spec: TensorSpec) -> None:
        super().__init__()
        self.channels_last = encoder_kind(spec) == "image-nhwc"
        channels = spec.shape[-1] if self.channels_last else spec.shape[1]
        self.conv1 = nn.Conv2d(int(channels), 8, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(8, FEATURES, 3, stride=2, padding=1)
        hw = _spatial(spec)
        self.dense = None if hw is None else nn.Linear(hw[0] * hw[1] * FEATURES, FEATURES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.permute(0, 3, 1, 2)
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        if self.dense is None:
            return x.mean(dim=(2, 3))
        return torch.relu(self.dense(x.permute(0, 2, 3, 1).flatten(1)))


class TokenEncoder(nn.Module):
    """Embedding and a one-layer LSTM; the last hidden state."""

    def __init__(self, spec: TensorSpec, vocab: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, FEATURES)
        self.lstm = nn.LSTM(FEATURES, FEATURES, batch_first=True)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        _, (h, _) = self.lstm(self.embedding(ids))
        return h[-1]


class SequenceEncoder(nn.Module):
    """Two strided 1-D convolutions over time (kernel 5 then 3), ReLU, global average pooling."""

    def __init__(self, spec: TensorSpec) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(int(spec.shape[-1]), FEATURES, 5, stride=2, padding=2)
        self.conv2 = nn.Conv1d(FEATURES, FEATURES, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(1, 2)
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        return x.mean(dim=2)


class DenseEncoder(nn.Module):
    def __init__(self, spec: TensorSpec) -> None:
        super().__init__()
        self.dense = nn.Linear(int(spec.shape[-1]), FEATURES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.dense(x))


def make_encoder(spec: TensorSpec, zs: ZooSpec) -> nn.Module:
    kind = encoder_kind(spec)
    if kind.startswith("image"):
        return ImageEncoder(spec)
    if kind == "tokens":
        return TokenEncoder(spec, zs.vocab[spec.name])
    if kind == "sequence":
        return SequenceEncoder(spec)
    return DenseEncoder(spec)


def _key(name: str, i: int) -> str:
    # ModuleDict keys cannot hold '.'; card names may. The index keeps sanitized keys unique.
    key = re.sub(r"[^A-Za-z0-9_]", "_", name)
    return key if key.isidentifier() else f"input{i}_{key}"


class _Fusion(nn.Module):
    """Per-input encoders keyed by input name, and the output activation the card asks for."""

    def __init__(self, card: ModelCard) -> None:
        super().__init__()
        self.spec = zoo_spec(card)
        self.encoders = nn.ModuleDict({_key(s.name, i): make_encoder(s, self.spec) for i, s in enumerate(card.inputs)})

    def features(self, inputs: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
        if len(inputs) != len(self.encoders):
            raise TypeError(f"expected {len(self.encoders)} inputs in the card's order, got {len(inputs)}")
        return [enc(x) for enc, x in zip(self.encoders.values(), inputs, strict=True)]

    def finish(self, logits: torch.Tensor) -> torch.Tensor:
        if self.spec.activation == "softmax":
            return torch.softmax(logits, dim=-1)
        if self.spec.activation == "sigmoid":
            return torch.sigmoid(logits)
        return logits


class EarlyFusion(_Fusion):
    """Feature-level: encoder features concatenated, then Dense(32) + ReLU + dropout + Dense(labels)."""

    def __init__(self, card: ModelCard) -> None:
        super().__init__(card)
        self.head = nn.Sequential(nn.Linear(FEATURES * len(self.encoders), WIDTH), nn.ReLU(), nn.Dropout(0.1),
                                  nn.Linear(WIDTH, self.spec.n_out))

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.finish(self.head(torch.cat(self.features(inputs), dim=-1)))


class LateFusion(_Fusion):
    """Decision-level: one classifier per input; their probabilities (or logits) are averaged."""

    def __init__(self, card: ModelCard) -> None:
        super().__init__(card)
        self.heads = nn.ModuleDict({k: nn.Linear(FEATURES, self.spec.n_out) for k in self.encoders})

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        decisions = [self.finish(head(f)) for head, f in zip(self.heads.values(), self.features(inputs), strict=True)]
        return torch.stack(decisions, dim=0).mean(dim=0)


class IntermediateFusion(_Fusion):
    """Model-level: a gated multimodal unit over per-input projections, then shared dense layers.

    ``h_i = tanh(W_i f_i)``, ``z = softmax(W_z [f_1..f_M])``, ``fused = sum_i z_i h_i``
    (Arevalo et al., 2017, with a softmax gate over M modalities). The head also sees the
    elementwise product ``prod_i h_i``: a convex mix of the modalities cannot say whether they
    agree, their product can, and it keeps any one input from being ignored.
    """

    def __init__(self, card: ModelCard) -> None:
        super().__init__(card)
        m = len(self.encoders)
        self.proj = nn.ModuleDict({k: nn.Linear(FEATURES, WIDTH) for k in self.encoders})
        self.gate = nn.Linear(FEATURES * m, m)
        self.head = nn.Sequential(nn.Linear(2 * WIDTH, WIDTH), nn.ReLU(), nn.Linear(WIDTH, self.spec.n_out))

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        feats = self.features(inputs)
        hs = [torch.tanh(p(f)) for p, f in zip(self.proj.values(), feats, strict=True)]
        z = torch.softmax(self.gate(torch.cat(feats, dim=-1)), dim=-1)
        fused = (z.unsqueeze(-1) * torch.stack(hs, dim=1)).sum(dim=1)
        product = hs[0]
        for other in hs[1:]:
            product = product * other
        return self.finish(self.head(torch.cat([fused, product], dim=-1)))


class AttentionFusion(_Fusion):
    """Cross-modal attention: one token per input, a transformer block over the tokens, mean pool."""

    def __init__(self, card: ModelCard) -> None:
        super().__init__(card)
        self.proj = nn.ModuleDict({k: nn.Linear(FEATURES, WIDTH) for k in self.encoders})
        self.attention = nn.MultiheadAttention(WIDTH, 2, batch_first=True)
        self.norm1 = nn.LayerNorm(WIDTH)
        self.ffn = nn.Sequential(nn.Linear(WIDTH, 2 * WIDTH), nn.ReLU(), nn.Linear(2 * WIDTH, WIDTH))
        self.norm2 = nn.LayerNorm(WIDTH)
        self.out = nn.Linear(WIDTH, self.spec.n_out)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        feats = self.features(inputs)
        tokens = torch.stack([p(f) for p, f in zip(self.proj.values(), feats, strict=True)], dim=1)
        attended, _ = self.attention(tokens, tokens, tokens, need_weights=False)
        x = self.norm1(tokens + attended)
        x = self.norm2(x + self.ffn(x))
        return self.finish(self.out(x.mean(dim=1)))


STRATEGY_CLASSES: dict[str, type[_Fusion]] = {
    "early": EarlyFusion, "late": LateFusion, "intermediate": IntermediateFusion, "attention": AttentionFusion,
}


def build(name: str, card: ModelCard, *, seed: int = 0) -> nn.Module:
    """Build zoo model ``name`` for ``card`` with weights drawn from ``seed`` (global RNG untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = STRATEGY_CLASSES[name](card)
    return model.eval()


def early(card: ModelCard, seed: int = 0) -> nn.Module:
    """Factory for ``mmstd export --framework torch --model mmstd.zoo.torch_models:early``."""
    return build("early", card, seed=seed)


def late(card: ModelCard, seed: int = 0) -> nn.Module:
    """Factory for ``--model mmstd.zoo.torch_models:late``."""
    return build("late", card, seed=seed)


def intermediate(card: ModelCard, seed: int = 0) -> nn.Module:
    """Factory for ``--model mmstd.zoo.torch_models:intermediate``."""
    return build("intermediate", card, seed=seed)


def attention(card: ModelCard, seed: int = 0) -> nn.Module:
    """Factory for ``--model mmstd.zoo.torch_models:attention``."""
    return build("attention", card, seed=seed)
