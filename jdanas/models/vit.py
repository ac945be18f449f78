"""A small Vision Transformer for 32x32 inputs (Dosovitskiy et al., ICLR 2021,
https://arxiv.org/abs/2010.11929), in the common CIFAR form without a class token.

``ViT(dim, depth, heads, mlp_ratio, patch)``: a patch embedding (conv ``patch x patch`` with stride
``patch``, no bias) followed by BatchNorm (the convolutional-stem variant of Xiao et al., NeurIPS 2021,
https://arxiv.org/abs/2106.14881; it also gives every family of the library a ``batch_stats``
collection) plus a learned position embedding, ``depth`` pre-LN transformer blocks
(``x + MHSA(LN(x))``, then ``x + MLP(LN(x))`` with a GELU MLP of width ``mlp_ratio * dim``), a final
LayerNorm, mean pooling over the tokens (as in the global-average-pool ViT variants) and a linear
classifier. Dropout is not used (the KD recipes of this library have none).

For the library's feature contract the tokens are kept as an NHWC grid ``[B, H/p, W/p, dim]``:
stage taps are the block outputs at one, two and three thirds of the depth and ``pre_pool`` is the
final LayerNorm's output, so ``pooled`` (its spatial mean) is the mean-pooled token.
"""
from __future__ import annotations

import flax.linen as nn

from jdanas.models import layers
from jdanas.models.convmixer import depth_taps


class TransformerBlock(nn.Module):
  """Pre-LN block on tokens ``[B, T, dim]``."""
  heads: int
  mlp_ratio: int

  @nn.compact
  def __call__(self, x):
    dim = x.shape[-1]
    y = nn.LayerNorm(epsilon=1e-6, name="ln1")(x)
    x = x + nn.MultiHeadDotProductAttention(num_heads=self.heads, name="attn")(y, y)
    y = nn.LayerNorm(epsilon=1e-6, name="ln2")(x)
    y = layers.gelu(nn.Dense(self.mlp_ratio * dim, name="mlp_in")(y))
    return x + nn.Dense(dim, name="mlp_out")(y)


class ViT(nn.Module):
  """See the module docstring."""
  dim: int = 192
  depth: int = 6
  heads: int = 3
  mlp_ratio: int = 2
  patch: int = 4
  num_classes: int = 10

  @nn.compact
  def __call__(self, x, enc=None, *, train: bool = False) -> layers.Features:
    del enc  # the structure is fixed by the fields; no dropout
    if self.dim % self.heads or self.depth < 1 or x.shape[1] % self.patch or x.shape[2] % self.patch:
      raise ValueError(f"ViT: heads ({self.heads}) must divide dim ({self.dim}), depth must be >= 1 and the "
                       f"patch ({self.patch}) must divide the input size {x.shape[1:3]}")
    x = nn.Conv(self.dim, (self.patch, self.patch), strides=(self.patch, self.patch), padding="VALID",
                use_bias=False, kernel_init=layers.conv_init, name="patch_embed")(x)
    x = layers.batch_norm(train, "patch_bn")(x)
    b, h, w, _ = x.shape
    pos = self.param("pos_embed", nn.initializers.normal(0.02), (1, h * w, self.dim))
    tokens = x.reshape(b, h * w, self.dim) + pos
    taps, stages = depth_taps(self.depth), []
    for i in range(self.depth):
      tokens = TransformerBlock(self.heads, self.mlp_ratio, name=f"block{i}")(tokens)
      stages.extend([tokens.reshape(b, h, w, self.dim)] * taps.count(i))
    pre_pool = nn.LayerNorm(epsilon=1e-6, name="final_ln")(tokens).reshape(b, h, w, self.dim)
    return layers.features_dict(stages, pre_pool, layers.classifier(self.num_classes))
