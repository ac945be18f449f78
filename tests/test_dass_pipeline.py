"""DaSS in the pipeline: the ``predictor`` evaluator, the space's own teacher, ``final.init='remap'`` and the
``meta_train`` job (fast), and meta_train -> search -> report/export end to end (slow)."""
from __future__ import annotations

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import concrete_variables, require_file
from jdanas import meta
from jdanas.evaluators.predictor import PREDICTOR_UNITS, PredictorEvaluator
from jdanas.pipeline import ConfigError, build_plan
from jdanas.pipeline.config import space_ref
from jdanas.spaces import DassSpace
from jdanas.spaces.dass import encoding_features
from jdanas.teachers import Teacher, load_teacher, save_teacher

KWARGS = dict(stage_widths=(4, 8, 8, 8), max_depth=2, multipliers=(0.5, 1.0), image_size=8)
SPACE = DassSpace(**KWARGS)
K = 3
NUM_NOISE, NOISE_SEED = 2, 0


def _teacher_variables(seed=0):
  module = SPACE.teacher(K)
  return concrete_variables(jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)),
                                                               train=False)), seed)


@pytest.fixture(scope="module")
def teacher():
  return Teacher(name="dass_resnet_teacher", module=SPACE.teacher(K), variables=_teacher_variables(), num_classes=K,
                 input_shape=(8, 8, 3), meta={"space": {"name": "dass_resnet", "kwargs": json.loads(json.dumps(KWARGS))}})


@pytest.fixture(scope="module")
def predictor_dir(tmp_path_factory, teacher):
  """A (not meta-trained) predictor saved the way a meta_train job saves one."""
  noise = meta.noise_input(jax.random.key(NOISE_SEED), SPACE, NUM_NOISE)
  t_map = meta.embed_teacher(SPACE, teacher.variables, noise, num_classes=K)
  arch = encoding_features(SPACE, jnp.asarray(SPACE.teacher_encoding))
  example = meta.Task(maps=t_map[None], arch=arch[None], labels=jnp.zeros(1), teacher_map=t_map, teacher_arch=arch,
                      teacher_label=jnp.float32(80.0))
  model, config = meta.DassPredictor(hidden_channels=4, out_channels=8, h_dim=8), meta.MetaConfig(target="relative")
  state = meta.meta_init(jax.random.key(1), model, example, config)
  path = tmp_path_factory.mktemp("predictor") / "predictor"
  meta.save_predictor(path, model, config, state, meta={
      "space": {"name": "dass_resnet", "kwargs": json.loads(json.dumps(KWARGS))}, "num_noise": NUM_NOISE,
      "noise_seed": NOISE_SEED, "remap": "copy_paste_first", "map_shape": list(t_map.shape)})
  return path


def _pool(n, seed=0):
  return np.asarray(jax.vmap(SPACE.sample)(jax.random.split(jax.random.key(seed), n)), np.int32)


def test_predictor_evaluator_scores_adapts_once_and_compiles_once(predictor_dir, teacher, monkeypatch):
  calls = []
  real_adapt = meta.adapt
  monkeypatch.setattr(meta, "adapt", lambda *a, **k: calls.append(1) or real_adapt(*a, **k))
  ev = PredictorEvaluator(SPACE, teacher, 0.8, predictor_dir, chunk=4)
  encs = _pool(6)
  first = ev(jax.random.key(0), encs)
  again = ev(jax.random.key(1), _pool(6, seed=1))
  assert first.scores.shape == (6,) and first.scores.dtype == np.float32 and np.isfinite(first.scores).all()
  assert len(calls) == 1 and ev.num_adaptations == 1  # adapted once per run, then only embed + predict
  assert ev.trace_counts["predict"] == 1  # one compiled predictor for one batch size
  assert first.num_compilations == 2 and again.num_compilations == 0  # predictor + features, reported once
  assert ev.score_kind.kind == "predicted_kd_accuracy"
  assert ev.score_kind.units == PREDICTOR_UNITS and "percent (" not in ev.score_kind.label  # a rank score
  # the same numbers as the library's meta-test on the same candidates
  noise = meta.noise_input(jax.random.key(NOISE_SEED), SPACE, NUM_NOISE)
  task = ev.support._replace(maps=meta.embed_students(SPACE, teacher.variables, encs, noise, num_classes=K),
                             arch=jax.vmap(lambda e: encoding_features(SPACE, e))(jnp.asarray(encs)),
                             labels=jnp.zeros(6))
  _, expected = meta.rank_candidates(ev.model, ev.config, ev.params, ev.alphas, task)
  np.testing.assert_allclose(first.scores, expected, rtol=1e-5, atol=1e-4)
  assert not np.allclose(first.scores, again.scores)  # other candidates, other predictions


@pytest.mark.slow  # a second predictor build and compile (~5 s CPU); the fast suite is over budget
def test_predictor_evaluator_without_adaptation_reads_the_raw_predictor(predictor_dir, teacher):
  adapted = PredictorEvaluator(SPACE, teacher, 0.8, predictor_dir)
  raw = PredictorEvaluator(SPACE, teacher, 0.8, predictor_dir, adapt=False)
  encs = _pool(4)
  a, r = adapted(None, encs).scores, raw(None, encs).scores
  assert raw.score_kind.kind == "predicted_kd_accuracy_no_adapt" and not np.allclose(a, r)


def test_space_teacher_saves_and_loads_as_the_space_network(tmp_path, teacher):
  path = save_teacher(tmp_path / "t", teacher)
  loaded = load_teacher(path)
  assert loaded.module == SPACE.teacher(K)
  jax.tree.map(np.testing.assert_array_equal, loaded.variables, teacher.variables)


def test_remap_students_of_the_teacher_is_the_teacher(teacher):
  (same,) = meta.remap_students(teacher.variables, SPACE, [SPACE.teacher_encoding], K, (8, 8, 3))
  jax.tree.map(np.testing.assert_array_equal, same, teacher.variables)
  small = meta.remap_students(teacher.variables, SPACE, _pool(3), K, (8, 8, 3))
  assert [s["params"]["classifier"]["kernel"].shape for s in small] == [(8, K)] * 3


# ---- configs (validated before compute) -----------------------------------------------------------

def _search_config(predictor_dir, **teacher):
  from configs import dass_search
  c = dass_search.get_config()  # full variant: TFDS data is only named, not loaded, by build_plan
  c.space.kwargs = dict(KWARGS)
  c.evaluator.predictor.path = str(predictor_dir)
  c.teacher.update(teacher)
  return c


def test_search_config_validates_and_plans_the_remapped_final(predictor_dir):
  plan = build_plan(_search_config(predictor_dir))
  assert plan.evaluator.name == "predictor" and plan.final_init == "remap" and plan.evaluator.values["adapt"] is True


def test_refuses_a_teacher_that_is_not_the_dass_network(predictor_dir, tmp_path):
  with pytest.raises(ConfigError, match=r"^config\.teacher\.name: the predictor evaluator needs the space's own"):
    build_plan(_search_config(predictor_dir, name="resnet20"))
  zoo = Teacher(name="resnet8", module=None, variables={}, num_classes=K, input_shape=(8, 8, 3))
  (tmp_path / "zoo").mkdir()
  (tmp_path / "zoo" / "teacher.json").write_text(json.dumps({"name": zoo.name, "num_classes": K,
                                                             "input_shape": [8, 8, 3], "meta": {}}))
  with pytest.raises(ConfigError, match=r"^config\.teacher\.path: the predictor evaluator needs"):
    build_plan(_search_config(predictor_dir, path=str(tmp_path / "zoo")))
  other = dict(KWARGS, stage_widths=[4, 8, 8, 16])  # a DaSS network, but of another space
  (tmp_path / "other").mkdir()
  (tmp_path / "other" / "teacher.json").write_text(json.dumps({"name": "dass_resnet_teacher", "num_classes": K,
      "input_shape": [8, 8, 3], "meta": {"space": {"name": "dass_resnet", "kwargs": other}}}))
  with pytest.raises(ConfigError, match=r"^config\.teacher\.path: .*got the full network of"):
    build_plan(_search_config(predictor_dir, path=str(tmp_path / "other")))
  c = _search_config(predictor_dir)
  c.evaluator.name, c.evaluator.short_kd = "short_kd", dict(steps=2, batch_size=8, optimizer="sgd",
                                                            learning_rate=0.1, weight_decay=0.0, schedule="cosine")
  c.teacher.name = "resnet20"  # final.init='remap' needs the space's teacher too
  with pytest.raises(ConfigError, match=r"^config\.teacher\.name: final\.init='remap' needs"):
    build_plan(c)


def test_refuses_a_predictor_of_another_space(predictor_dir):
  c = _search_config(predictor_dir)
  c.space.kwargs = dict(KWARGS, multipliers=(0.5, 0.75, 1.0))
  with pytest.raises(ConfigError, match=r"^config\.evaluator\.predictor\.path: the predictor .* was meta-trained on"):
    build_plan(c)


def test_meta_train_config_validates():
  from configs import dass_meta_train
  from jdanas.pipeline.meta_train import build_meta_plan
  plan = build_meta_plan(dass_meta_train.get_config("runlocal"))
  assert plan.recipe.num_students == 8 and plan.meta.target == "relative" and plan.recipe.strategy == "loop"
  c = dass_meta_train.get_config("runlocal")
  c.meta.num_queries = 9
  with pytest.raises(ConfigError, match=r"^config\.meta\.num_queries: 9 exceeds"):
    build_meta_plan(c)
  c = dass_meta_train.get_config("runlocal")
  c.tasks.eval_every, c.tasks.label, c.tasks.repeats = 20, "final", 2
  plan = build_meta_plan(c)
  assert (plan.recipe.eval_every, plan.recipe.label, plan.recipe.repeats) == (20, "final", 2)
  c.tasks.eval_every = 61
  with pytest.raises(ConfigError, match=r"^config\.tasks\.eval_every: 61 exceeds the students' 60 steps"):
    build_meta_plan(c)
  c = dass_meta_train.get_config("runlocal")
  c.tasks.label = "mean"
  with pytest.raises(ConfigError, match=r"^config\.tasks\.label: "):
    build_meta_plan(c)
  c = dass_meta_train.get_config("runlocal")
  c.predictor.width = 3
  with pytest.raises(ConfigError, match=r"^config\.predictor: unknown field"):
    build_meta_plan(c)
  assert space_ref(c.space)["kwargs"]["stage_widths"] == list(dass_meta_train.RUNLOCAL_SPACE["stage_widths"])


def test_show_config_of_the_meta_train_job(data_dir):
  require_file(pathlib.Path(data_dir) / "cifar10_train_subset.npz")
  from configs import dass_meta_train
  from jdanas.pipeline import describe, prepare
  config = dass_meta_train.get_config("runlocal")
  text = describe(config, prepare(config))
  assert "# plan (config.job='meta_train')" in text and "tasks: 5 class subsets of 3 (4 meta-train, 1 meta-validation)" in text
  assert "  meta.episodes: int = 200" in text



def test_meta_train_refuses_several_processes_before_compute(monkeypatch):
  from configs import dass_meta_train
  from jdanas.pipeline.meta_train import prepare_meta
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  with pytest.raises(ConfigError, match=r"^config\.job: 'meta_train' runs in one process; this run has 2"):
    prepare_meta(dass_meta_train.get_config("runlocal"))


# ---- end to end ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_meta_train_then_search_end_to_end(tmp_path, data_dir, capsys):
  """config.job='meta_train' (smoke) -> predictor -> dass_search (smoke): report, ledger and export."""
  require_file(pathlib.Path(data_dir) / "cifar10_train_subset.npz")
  from configs import dass_meta_train, dass_search
  from jdanas import pipeline
  from jdanas.export import load_student
  meta_config = dass_meta_train.get_config("smoke")
  meta_config.tasks.update(eval_every=1, repeats=2)  # best-over-curve labels, two trainings of every task
  meta_report = pipeline.run(meta_config, tmp_path / "meta")
  assert [t["split"] for t in meta_report["tasks"]] == ["meta_train", "meta_train", "meta_val"]
  assert all(set(t["classes"]) <= set(dass_meta_train.SEEN_CLASSES) for t in meta_report["tasks"])
  assert all(set(t["reliability"]) == {"spearman", "spearman_brown", "kendall", "n"} for t in meta_report["tasks"])
  assert "label reliability (split-half Spearman)" in capsys.readouterr().out
  assert (tmp_path / "meta" / "predictor" / "predictor.json").is_file()
  again = pipeline.run(meta_config, tmp_path / "meta")  # finished: nothing recomputed
  assert again["seconds"] == meta_report["seconds"]
  c = dass_search.get_config("smoke")
  c.evaluator.predictor.path = str(tmp_path / "meta" / "predictor")
  report = pipeline.run(c, tmp_path / "search")
  assert report["search"]["score"]["kind"] == "predicted_kd_accuracy"
  assert report["final"]["init"] == "remap" and len(report["top"]) == 2
  ledger = json.loads((tmp_path / "search" / "ledger.json").read_text())
  assert len(ledger) == 6 and all(np.isfinite(r["score"]) for r in ledger)
  student = load_student(tmp_path / "search" / report["export"])
  assert student is not None
