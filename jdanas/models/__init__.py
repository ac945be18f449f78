"""Flax Linen models (teachers and the building blocks of search spaces)."""
from jdanas.models.layers import Features
from jdanas.models.resnet import CifarResNet
from jdanas.models.zoo import MODELS, get_model

__all__ = ["CifarResNet", "Features", "MODELS", "get_model"]
