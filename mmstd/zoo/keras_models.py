"""The zoo's Keras 3 models: the functional twins of ``torch_models``, built from the same card.

Only built-in layers are used (no Lambda, no custom classes), so every model saves as ``.keras``
and loads with ``safe_mode=True``. Layer names are fixed (``image_conv1``, ``head_out``), so the
weight paths in ``weights.safetensors`` (``image_conv1/kernel``) are stable. Named axes become
``None`` dims of the ``keras.Input``.
"""
from __future__ import annotations

import os
import re
from typing import Any

from mmstd.card import ModelCard, TensorSpec
from mmstd.zoo.spec import FEATURES, WIDTH, ZooSpec, encoder_kind, image_grid, zoo_spec

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402  (after the log level: TensorFlow reads it at import)
from keras import layers  # noqa: E402


def _prefix(spec: TensorSpec, i: int) -> str:
    key = re.sub(r"[^A-Za-z0-9_]", "_", spec.name)
    return key if key[:1].isalpha() else f"input{i}_{key}"


def _encoder(x: Any, spec: TensorSpec, zs: ZooSpec, p: str) -> Any:
    kind = encoder_kind(spec)
    if kind.startswith("image"):
        if kind == "image-nchw":
            x = layers.Permute((2, 3, 1), name=f"{p}_to_nhwc")(x)
        x = layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name=f"{p}_conv1")(x)
        x = layers.Conv2D(FEATURES, 3, strides=2, padding="same", activation="relu", name=f"{p}_conv2")(x)
        if image_grid(spec) is None:
            return layers.GlobalAveragePooling2D(name=f"{p}_pool")(x)
        x = layers.Flatten(name=f"{p}_flatten")(x)
        return layers.Dense(FEATURES, activation="relu", name=f"{p}_dense")(x)
    if kind == "tokens":
        x = layers.Embedding(zs.vocab[spec.name], FEATURES, name=f"{p}_embedding")(x)
        return layers.LSTM(FEATURES, name=f"{p}_lstm")(x)
    if kind == "sequence":
        x = layers.Conv1D(FEATURES, 5, strides=2, padding="same", activation="relu", name=f"{p}_conv1")(x)
        x = layers.Conv1D(FEATURES, 3, strides=2, padding="same", activation="relu", name=f"{p}_conv2")(x)
        return layers.GlobalAveragePooling1D(name=f"{p}_pool")(x)
    return layers.Dense(FEATURES, activation="relu", name=f"{p}_dense")(x)


def _concat(tensors: list[Any], *, axis: int = -1, name: str) -> Any:
    # Concatenate needs two inputs; a one-modality card has one.
    return tensors[0] if len(tensors) == 1 else layers.Concatenate(axis=axis, name=name)(tensors)


def _activation(zs: ZooSpec) -> str | None:
    return None if zs.activation == "none" else zs.activation


def build(name: str, card: ModelCard, *, seed: int = 0) -> Any:
    """Build zoo model ``name`` for ``card``; ``keras.utils.set_random_seed(seed)`` seeds its weights.

    Note that this seeds Python's, NumPy's and TensorFlow's global generators, as Keras requires.
    """
    keras.utils.set_random_seed(seed)
    zs = zoo_spec(card)
    inputs, feats, prefixes = [], [], []
    for i, spec in enumerate(card.inputs):
        shape = tuple(None if isinstance(d, str) else d for d in spec.shape[1:])
        p = _prefix(spec, i)
        x = keras.Input(shape=shape, dtype=spec.dtype, name=p)
        inputs.append(x)
        prefixes.append(p)
        feats.append(_encoder(x, spec, zs, p))
    act = _activation(zs)
    if name == "early":
        h = _concat(feats, name="fuse_concat")
        h = layers.Dense(WIDTH, activation="relu", name="head_dense")(h)
        h = layers.Dropout(0.1, name="head_dropout")(h)
        out = layers.Dense(zs.n_out, activation=act, name="head_out")(h)
    elif name == "late":
        decisions = [layers.Dense(zs.n_out, activation=act, name=f"{p}_head")(f) for p, f in zip(prefixes, feats, strict=True)]
        out = decisions[0] if len(decisions) == 1 else layers.Average(name="head_out")(decisions)
    elif name == "intermediate":
        hs = [layers.Reshape((1, WIDTH), name=f"{p}_token")(layers.Dense(WIDTH, activation="tanh", name=f"{p}_proj")(f))
              for p, f in zip(prefixes, feats, strict=True)]
        stacked = _concat(hs, axis=1, name="fuse_stack")
        gate = layers.Dense(len(feats), activation="softmax", name="fuse_gate")(_concat(feats, name="fuse_concat"))
        fused = layers.Dot(axes=(1, 1), name="fuse_gmu")([gate, stacked])
        product = hs[0] if len(hs) == 1 else layers.Multiply(name="fuse_product")(hs)
        product = layers.Reshape((WIDTH,), name="fuse_product_flat")(product)
        fused = layers.Reshape((WIDTH,), name="fuse_gmu_flat")(fused)
        h = layers.Dense(WIDTH, activation="relu", name="head_dense")(_concat([fused, product], name="fuse_interaction"))
        out = layers.Dense(zs.n_out, activation=act, name="head_out")(h)
    elif name == "attention":
        tokens = [layers.Reshape((1, WIDTH), name=f"{p}_token")(layers.Dense(WIDTH, name=f"{p}_proj")(f))
                  for p, f in zip(prefixes, feats, strict=True)]
        x = _concat(tokens, axis=1, name="fuse_tokens")
        attended = layers.MultiHeadAttention(num_heads=2, key_dim=WIDTH // 2, name="fuse_attention")(x, x)
        x = layers.LayerNormalization(epsilon=1e-5, name="fuse_norm1")(layers.Add(name="fuse_residual1")([x, attended]))
        ffn = layers.Dense(2 * WIDTH, activation="relu", name="fuse_ffn1")(x)
        ffn = layers.Dense(WIDTH, name="fuse_ffn2")(ffn)
        x = layers.LayerNormalization(epsilon=1e-5, name="fuse_norm2")(layers.Add(name="fuse_residual2")([x, ffn]))
        x = layers.GlobalAveragePooling1D(name="fuse_pool")(x)
        out = layers.Dense(zs.n_out, activation=act, name="head_out")(x)
    else:
        raise KeyError(name)
    return keras.Model(inputs, out, name=f"zoo_{name}")


def early(card: ModelCard, seed: int = 0) -> Any:
    """Factory for ``mmstd export --framework keras --model mmstd.zoo.keras_models:early``."""
    return build("early", card, seed=seed)


def late(card: ModelCard, seed: int = 0) -> Any:
    """Factory for ``--model mmstd.zoo.keras_models:late``."""
    return build("late", card, seed=seed)


def intermediate(card: ModelCard, seed: int = 0) -> Any:
    """Factory for ``--model mmstd.zoo.keras_models:intermediate``."""
    return build("intermediate", card, seed=seed)


def attention(card: ModelCard, seed: int = 0) -> Any:
    """Factory for ``--model mmstd.zoo.keras_models:attention``."""
    return build("attention", card, seed=seed)
