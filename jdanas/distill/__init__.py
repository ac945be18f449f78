"""Distillation losses."""
from jdanas.distill.losses import KD_PRESETS, TAPS, KDLoss, is_tap, kd_loss, tap_feature
from jdanas.distill.relations import batch_gram, channel_gram, channel_pool, ickd_loss, sp_loss

__all__ = ["KDLoss", "KD_PRESETS", "TAPS", "batch_gram", "channel_gram", "channel_pool", "ickd_loss", "is_tap", "kd_loss",
           "sp_loss", "tap_feature"]
