"""VGG networks with BatchNorm for CIFAR (Simonyan & Zisserman, ICLR 2015,
https://arxiv.org/abs/1409.1556), as in the RepDistiller / DisWOT model zoo (``models/vgg.py``,
the ``vggX_bn`` builders; the fully connected layers are replaced by one linear classifier).

The network is five groups of conv3x3 (with bias, as ``nn.Conv2d``'s default) + BN + ReLU layers.
Group ``g`` has the widths ``cfg[g]``: VGG-8 ``[[64], [128], [256], [512], [512]]``, VGG-11
``[[64], [128], [256, 256], [512, 512], [512, 512]]``, VGG-13
``[[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]]``.

Pooling follows RepDistiller's ``forward`` exactly: a 2x2 max-pool (stride 2) after groups 0, 1
and 2; after group 3 only when the input is 64 pixels high (so a 32x32 CIFAR input keeps a 4x4
map through the last two groups); after group 4 a global average pool and the classifier. A
max-pool is skipped when the map is already smaller than 2x2, so tiny inputs (e.g. 8x8) work.
The stage taps are the five group outputs (after their ReLU, before pooling); ``pre_pool`` is the
last one.
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn

from jdanas.models import layers

VGG_CFGS: dict[str, tuple[tuple[int, ...], ...]] = {
    "vgg8": ((64,), (128,), (256,), (512,), (512,)),
    "vgg11": ((64,), (128,), (256, 256), (512, 512), (512, 512)),
    "vgg13": ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
    "vgg16": ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
    "vgg19": ((64, 64), (128, 128), (256, 256, 256, 256), (512, 512, 512, 512),
              (512, 512, 512, 512)),
}


def _max_pool_2x2(x):
  if x.shape[1] < 2 or x.shape[2] < 2:
    return x
  return nn.max_pool(x, (2, 2), (2, 2))


class VGG(nn.Module):
  """CIFAR VGG with BN; ``cfg`` is five groups of conv widths (see :data:`VGG_CFGS`)."""
  cfg: Sequence[Sequence[int]] = VGG_CFGS["vgg8"]
  num_classes: int = 10

  @nn.compact
  def __call__(self, x, enc=None, *, train: bool = False) -> layers.Features:
    del enc  # the structure is fixed by cfg
    if len(self.cfg) != 5 or not all(len(group) for group in self.cfg):
      raise ValueError(f"VGG: cfg must have 5 non-empty groups of widths, got {self.cfg}")
    input_height = x.shape[1]
    stages = []
    for g, group in enumerate(self.cfg):
      for i, width in enumerate(group):
        x = layers.conv(width, 3, name=f"group{g}_conv{i}", use_bias=True)(x)
        x = layers.relu(layers.batch_norm(train, f"group{g}_bn{i}")(x))
      stages.append(x)
      if g < 3 or (g == 3 and input_height == 64):
        x = _max_pool_2x2(x)
    return layers.features_dict(stages, x, layers.classifier(self.num_classes))


def vgg(name: str = "vgg8", num_classes: int = 10, width_mult: float = 1.0) -> VGG:
  """``VGG_CFGS[name]`` with every conv width scaled to ``max(1, int(c * width_mult))``."""
  if name not in VGG_CFGS:
    raise ValueError(f"vgg: unknown config {name!r}; choose one of {', '.join(VGG_CFGS)}")
  if width_mult <= 0:
    raise ValueError(f"vgg: width_mult must be > 0, got {width_mult}")
  cfg = tuple(tuple(max(1, int(c * width_mult)) for c in group) for group in VGG_CFGS[name])
  return VGG(cfg=cfg, num_classes=num_classes)
