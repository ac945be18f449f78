"""ConvMixer (Trockman & Kolter, "Patches Are All You Need?", TMLR 2023,
https://arxiv.org/abs/2201.09792), sized for 32x32 inputs as in the paper's CIFAR-10 experiments.

``ConvMixer(dim, depth, patch, kernel)``: a patch embedding (conv ``patch x patch`` with stride
``patch`` and bias) -> GELU -> BN, then ``depth`` mixer layers, each
``x = x + BN(GELU(depthwise_conv_k(x)))`` (same padding, bias) followed by
``x = BN(GELU(pointwise_conv(x)))`` (bias), then global average pooling and a linear classifier.

Stage taps are the outputs of the mixer layers at one, two and three thirds of the depth (the
network has one resolution, so "stages" are depth thirds); ``pre_pool`` is the last layer's output.
"""
from __future__ import annotations

import flax.linen as nn

from jdanas.models import layers


def depth_taps(depth: int, num_taps: int = 3) -> tuple[int, ...]:
  """0-based layer indices whose outputs are the stage taps of an isotropic network."""
  return tuple(max(0, -(-depth * (i + 1) // num_taps) - 1) for i in range(num_taps))


class ConvMixer(nn.Module):
  """See the module docstring."""
  dim: int = 256
  depth: int = 8
  patch: int = 2
  kernel: int = 5
  num_classes: int = 10

  @nn.compact
  def __call__(self, x, enc=None, *, train: bool = False) -> layers.Features:
    del enc  # the structure is fixed by the fields
    if self.depth < 1 or x.shape[1] % self.patch or x.shape[2] % self.patch:
      raise ValueError(f"ConvMixer: depth must be >= 1 and the patch ({self.patch}) must divide the "
                       f"input size {x.shape[1:3]}")
    x = nn.Conv(self.dim, (self.patch, self.patch), strides=(self.patch, self.patch), padding="VALID",
                kernel_init=layers.conv_init, name="patch_embed")(x)
    x = layers.batch_norm(train, "patch_bn")(layers.gelu(x))
    taps, stages = depth_taps(self.depth), []
    for i in range(self.depth):
      y = layers.conv(self.dim, self.kernel, groups=self.dim, use_bias=True, name=f"layer{i}_dw")(x)
      x = x + layers.batch_norm(train, f"layer{i}_dw_bn")(layers.gelu(y))
      y = layers.conv(self.dim, 1, use_bias=True, name=f"layer{i}_pw")(x)
      x = layers.batch_norm(train, f"layer{i}_pw_bn")(layers.gelu(y))
      stages.extend([x] * taps.count(i))
    return layers.features_dict(stages, x, layers.classifier(self.num_classes))
