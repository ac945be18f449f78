"""DaSS building blocks (Lee, An, Kim, Hwang, ICLR 2023): parameter remapping teacher -> student,
functional embeddings of remapped students, and the meta accuracy predictor with Meta-SGD training."""
from jdanas.meta.embed import embed_exact, embed_students, embed_teacher, noise_input
from jdanas.meta.predictor import (TARGETS, DassPredictor, MetaConfig, MetaState, Task, adapt, inner_step, meta_init,
                                   meta_loss, meta_step, meta_train, predict, sample_queries, spearman)
from jdanas.meta.remap import MODES, remap

__all__ = ["DassPredictor", "MODES", "MetaConfig", "MetaState", "TARGETS", "Task", "adapt", "embed_exact",
           "embed_students", "embed_teacher", "inner_step", "meta_init", "meta_loss", "meta_step", "meta_train",
           "noise_input", "predict", "remap", "sample_queries", "spearman"]
