"""Flax Linen models (teachers and the building blocks of search spaces)."""
from jdanas.models.convmixer import ConvMixer
from jdanas.models.layers import Features
from jdanas.models.resnet import CifarResNet
from jdanas.models.shufflenetv2 import ShuffleNetV2
from jdanas.models.vit import ViT
from jdanas.models.zoo import MODELS, get_model

__all__ = ["CifarResNet", "ConvMixer", "Features", "MODELS", "ShuffleNetV2", "ViT", "get_model"]
