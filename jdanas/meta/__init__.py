"""DaSS building blocks (Lee, An, Kim, Hwang, ICLR 2023): parameter remapping teacher -> student,
functional embeddings of remapped students, the meta accuracy predictor with Meta-SGD training, and the
meta-dataset builder that generates its training tasks."""
from jdanas.meta.embed import embed_exact, embed_students, embed_teacher, noise_input
from jdanas.meta.predictor import (TARGETS, DassPredictor, MetaConfig, MetaState, Task, adapt, fit_plain, inner_step, meta_init,
                                   meta_loss, meta_step, meta_train, predict, rank_candidates,
                                   sample_queries, save_predictor, load_predictor, spearman)
from jdanas.meta.remap import MODES, remap, remap_students
from jdanas.meta.study import bootstrap_ci, pooled_metric, rank_metrics, regret, synthetic_labels
from jdanas.meta.tasks import (TaskRecipe, build_meta_dataset, build_task, class_subsets, load_meta_dataset, load_task,
                               load_teacher_variables,
                               stack_tasks, subset)

__all__ = ["DassPredictor", "MODES", "MetaConfig", "MetaState", "TARGETS", "Task", "adapt", "embed_exact",
           "embed_students", "embed_teacher", "fit_plain", "inner_step", "meta_init", "meta_loss", "meta_step", "meta_train",
           "load_predictor", "noise_input", "predict", "rank_candidates", "remap", "remap_students", "save_predictor", "sample_queries", "spearman", "TaskRecipe", "build_meta_dataset",
           "build_task", "class_subsets", "load_meta_dataset", "load_task", "load_teacher_variables", "stack_tasks", "subset",
           "bootstrap_ci", "pooled_metric", "rank_metrics", "regret", "synthetic_labels"]
