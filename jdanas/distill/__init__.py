"""Distillation: the KD loss, feature and relational losses, DisWOT's distances, feature taps.

Every loss takes ``(student, teacher)`` and returns per-example values (callers reduce); the
zero-cost proxies of :mod:`jdanas.scoring` are built on the same functions.
"""
from jdanas.distill.diswot import SEMANTIC_MISMATCH, classifier_gradient, semantic_distance, semantic_form
from jdanas.distill.features import at_loss, fitnet_loss
from jdanas.distill.losses import (KD_PRESETS, ORACLE_AGGREGATES, ORACLE_NONE_RIGHT, SOFT_FORMS, TARGETS, KDLoss, kd_loss, oracle_kd_loss,
                                   soft_kd_loss)
from jdanas.distill.relations import (batch_gram, channel_gram, channel_pool, ickd_loss, l2_normalize, pkt_loss,
                                      rkd_loss, sp_loss)
from jdanas.distill.taps import TAPS, check_tap, is_tap, tap_feature

__all__ = ["KDLoss", "KD_PRESETS", "ORACLE_AGGREGATES", "ORACLE_NONE_RIGHT", "SEMANTIC_MISMATCH", "SOFT_FORMS", "TAPS", "TARGETS", "at_loss", "batch_gram", "channel_gram",
           "channel_pool", "check_tap", "classifier_gradient", "fitnet_loss", "ickd_loss", "is_tap", "kd_loss",
           "l2_normalize", "oracle_kd_loss", "pkt_loss", "rkd_loss", "semantic_distance", "semantic_form", "soft_kd_loss", "sp_loss",
           "tap_feature"]
