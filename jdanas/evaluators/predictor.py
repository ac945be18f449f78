"""The ``predictor`` evaluator: DaSS's meta-trained accuracy predictor, adapted once to the run's teacher.

Its score is the predicted KD accuracy on a percent scale, uncalibrated on an unseen task (it can
exceed 100), so only its order is used: a rank score, not an accuracy (no reward wraps it). The DaSS
package (:mod:`jdanas.meta`) is imported when the evaluator is built.
"""
from __future__ import annotations

import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from jdanas.errors import FieldError
from jdanas.evaluators.base import BuildContext, Evaluation, EvaluatorBase, EvaluatorSettings, EvaluatorSpec, ScoreKind
from jdanas.pipeline.schema import ConfigError, Field, Section, need


PREDICTOR_UNITS = "uncalibrated predictor score on a percent scale, only its order is used; may exceed 100"


class PredictorEvaluator(EvaluatorBase):
  """DaSS's meta-test (Lee, An, Kim & Hwang, "Meta-prediction Model for Distillation-Aware NAS on Unseen
  Datasets", ICLR 2023; docs/methods/dass.md): a meta-trained accuracy predictor (a folder written by
  :func:`jdanas.meta.save_predictor`, e.g. by a ``config.job='meta_train'`` run) reads the run's teacher
  (the DaSS space's full network) and each candidate student remapped from it (functional embedding
  for the predictor's fixed noise, :func:`jdanas.meta.embed_students`; architecture vector,
  :func:`jdanas.spaces.dass.encoding_features`) and predicts its KD accuracy on a percent scale
  (``score_kind``: uncalibrated, it ranks the candidates; see :data:`PREDICTOR_UNITS`).

  The predictor is adapted ONCE, at the first call, by one Meta-SGD step on the teacher-only support
  (the teacher's own architecture, map and ``teacher_accuracy``; ``adapt=False``: the ablation without
  adaptation); every call then only embeds and predicts (one compiled program per batch size).
  Deterministic: ``key`` is unused.
  """

  name = "predictor"

  def __init__(self, space, teacher, teacher_accuracy: float, path, *, adapt: bool = True, chunk: int = 32):
    from jdanas import meta  # the DaSS package, imported when this evaluator is used
    from jdanas.spaces.dass import encoding_features
    info = json.loads((pathlib.Path(path) / "predictor.json").read_text())["meta"]
    self.space, self.teacher, self.chunk, self.adapt = space, teacher, int(chunk), bool(adapt)
    self.noise = meta.noise_input(jax.random.key(int(info["noise_seed"])), space, int(info["num_noise"]))
    k = teacher.num_classes
    teacher_map = meta.embed_teacher(space, teacher.variables, self.noise, num_classes=k)
    if tuple(teacher_map.shape) != tuple(info["map_shape"]):
      raise FieldError("path", f"the predictor reads maps of shape {tuple(info['map_shape'])}, "
                       f"the teacher gives {tuple(teacher_map.shape)}", owner="evaluator.predictor")
    # programs counted as they are traced (a jit traces once per program it compiles; no private JAX API)
    self.trace_counts = {"features": 0, "predict": 0}

    def features(e):
      self.trace_counts["features"] += 1
      return jax.vmap(lambda one: encoding_features(space, one))(e)

    self._features = jax.jit(features)
    teacher_arch = self._features(jnp.asarray(space.teacher_encoding)[None])
    # the support: the teacher as its own student, labelled with its validation accuracy in percent
    self.support = meta.Task(maps=teacher_map[None], arch=teacher_arch, labels=jnp.zeros((1,), jnp.float32),
                             teacher_map=teacher_map, teacher_arch=teacher_arch[0],
                             teacher_label=jnp.float32(100.0 * teacher_accuracy))
    self.model, self.config, self.params, self.alphas, self.info = meta.load_predictor(path, self.support)

    def predict(params, task):
      self.trace_counts["predict"] += 1
      return meta.predict(self.model, params, task, target=self.config.target)

    self._predict = jax.jit(predict)
    self._adapted = None
    self.num_adaptations = 0
    # Not an accuracy: the predictor's output is on the percent scale of its labels but uncalibrated on an
    # unseen task (values above 100 happen); the search and the top-K use only its order.
    self.score_kind = ScoreKind("predicted_kd_accuracy" if adapt else "predicted_kd_accuracy_no_adapt",
                                PREDICTOR_UNITS)

  def adapted_params(self):
    """The predictor's parameters adapted to this teacher (computed once, then cached)."""
    if self._adapted is None:
      from jdanas import meta
      self._adapted = (meta.adapt(self.model, self.params, self.alphas, self.support, target=self.config.target,
                                  first_order=True) if self.adapt else self.params)
      self.num_adaptations += 1
    return self._adapted

  def __call__(self, key: jax.Array, encodings: np.ndarray) -> Evaluation:
    del key  # deterministic
    from jdanas import meta
    t0 = time.perf_counter()
    before = sum(self.trace_counts.values())
    encs = np.asarray(encodings, np.int32)
    maps = meta.embed_students(self.space, self.teacher.variables, encs, self.noise,
                               num_classes=self.teacher.num_classes, chunk=self.chunk)
    task = self.support._replace(maps=maps, arch=self._features(jnp.asarray(encs)),
                                 labels=jnp.zeros((len(encs),), jnp.float32))
    scores = np.asarray(jax.device_get(self._predict(self.adapted_params(), task)), np.float32)
    # the predictor's and the feature map's new programs (the embedding's own jit is not counted)
    compiled = sum(self.trace_counts.values()) - before
    return Evaluation(scores=scores, seconds=time.perf_counter() - t0, num_compilations=compiled)


SECTION = Section("evaluator.predictor", {
    "path": Field("str", "", doc="the predictor folder of a config.job='meta_train' run (<its workdir>/predictor)"),
    "adapt": Field("bool", True, doc="one Meta-SGD step on the teacher before scoring (False: the ablation)"),
    "chunk": Field("int", 32, lo=1, note="students embedded at a time", doc="students embedded at a time"),
}, doc="DaSS's meta-trained predictor, adapted once to the teacher")


def settings(config, space, loss, *, inputs_optional: bool = False) -> EvaluatorSettings:
  """A meta-trained DaSS predictor folder that matches the run's space, and the space's own full network
  as the teacher (``inputs_optional``: an absent folder raises no ``MissingInput``; the rest is checked)."""
  del loss
  from jdanas.pipeline.config import MissingInput, _need_space_teacher, space_ref
  values = SECTION.read(config.evaluator.predictor)
  _need_space_teacher(config, space, "the predictor evaluator")
  path = values["path"]
  settings = EvaluatorSettings(name="predictor", values=values)
  info = pathlib.Path(path, "predictor.json")
  missing = ("required: the predictor folder of a config.job='meta_train' run (<its workdir>/predictor)" if not path
             else None if info.is_file() else
             f"no predictor.json in {path!r} (the predictor folder of a config.job='meta_train' run is <its "
             "workdir>/predictor)")
  if missing is not None:
    if inputs_optional:
      return settings
    raise MissingInput(f"config.evaluator.predictor.path: {missing}")
  try:
    meta = json.loads(info.read_text()).get("meta", {})
  except (ValueError, AttributeError) as e:
    raise ConfigError(f"config.evaluator.predictor.path: unreadable predictor.json in {path!r} ({e})") from None
  for field in ("space", "num_noise", "noise_seed", "map_shape"):
    need(field in meta, "evaluator.predictor.path", f"{str(info)!r} has no meta.{field} (not written by a "
         "config.job='meta_train' run)")
  need(meta["space"] == space_ref(config.space), "evaluator.predictor.path",
       f"the predictor in {path!r} was meta-trained on space {meta['space']}, the run's space is "
       f"{space_ref(config.space)}")
  return settings


def build(ctx: BuildContext) -> PredictorEvaluator:
  from jdanas.teachers import evaluate
  data, teacher, v = ctx.data, ctx.teacher, ctx.settings.values
  # the support label of DaSS's one-step adaptation: the teacher's validation accuracy
  accuracy = (evaluate(teacher.module, teacher.variables, data.val, data.mean, data.std) if ctx.teacher_val is None
              else ctx.teacher_val)
  try:
    return PredictorEvaluator(ctx.plan.space, teacher, accuracy, v["path"], adapt=v["adapt"], chunk=v["chunk"])
  except FieldError as e:  # e.g. a predictor whose maps do not match this teacher's
    raise ConfigError(f"config.{e.owner}.{e.field}: {e.detail}") from None
  except ValueError as e:
    raise ConfigError(f"config.evaluator.predictor: {e}") from None


SPEC = EvaluatorSpec(name="predictor", section=SECTION, settings=settings, build=build,
                     summary=lambda s: "" if s.values["adapt"] else " (not adapted to the teacher)",
                     programs=lambda s, plan, encodings: "the students' embedding and the predictor, one per batch "
                     "size")

__all__ = ["PREDICTOR_UNITS", "PredictorEvaluator", "SECTION", "SPEC"]
