"""Distillation losses."""
from jdanas.distill.losses import KD_PRESETS, KDLoss, kd_loss

__all__ = ["KDLoss", "KD_PRESETS", "kd_loss"]
