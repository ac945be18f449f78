"""Bad input never meets a traceback: every class of bad input to ``run.py`` exits with status 2 and
ONE stderr line ``error: ...`` naming the field, flag or file, before any compute.

The table runs ``run.main(argv)`` in-process (a fresh absl ``FlagValues`` per call, so it is the
command line itself, minus the interpreter start); a representative subset also runs as real
subprocesses. "No compute" is checked twice: the teacher trainer and the search are replaced by
functions that fail the test, and the workdir is not created (nothing is written before compute;
``config.json``, the config echo, is written when compute starts).
"""
import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import load_run_cli

REPO = pathlib.Path(__file__).resolve().parents[1]
SMOKE = "configs/default.py:smoke"
AKD = "configs/akd_cifar10.py"  # full variant: the reward is checked before the (TFDS) data is loaded
DASS = "configs/dass_search.py"  # full variants: the DaSS fields are checked before the (TFDS) data is loaded
DASS_META = "configs/dass_meta_train.py"


run_cli = load_run_cli()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
  """A folder of bad inputs: npz files, config files, a plain file."""
  d = tmp_path_factory.mktemp("inputs")
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, (60, 8, 8, 1), dtype=np.uint8)
  y = np.arange(60) % 3
  npz = {
      "good": dict(x=x, y=y),
      "wrong_keys": dict(images=x, labels=y),
      "float_images": dict(x=x.astype(np.float32), y=y),
      "negative_labels": dict(x=x, y=y - 1),
      "length_mismatch": dict(x=x, y=y[:50]),
      "zero_rows": dict(x=x[:0], y=y[:0]),
      "labels_2d": dict(x=x, y=y[:, None]),
      "images_5d": dict(x=x[:, None], y=y),
      "test_shape": dict(x=rng.integers(0, 256, (20, 16, 16, 1), dtype=np.uint8), y=np.arange(20) % 3),
      "too_few": dict(x=x[:3], y=np.array([0, 1, 2])),
      "label_gap": dict(x=x, y=np.where(y == 2, 999, y)),
      "single_class": dict(x=x, y=np.zeros(60, np.int64)),
  }
  for name, arrays in npz.items():
    np.savez(d / f"{name}.npz", **arrays)
  (d / "empty.npz").write_bytes(b"")
  (d / "not_a_zip.npz").write_text("hello")
  configs = {
      "syntax": "def get_config(:\n",
      "no_get_config": "X = 1\n",
      "import_error": "import jdanas_no_such_module\n\ndef get_config():\n  return None\n",
      "raises": "def get_config():\n  raise RuntimeError('broken config')\n",
      "not_a_dict": "def get_config():\n  return 3\n",
      "bad_searcher_kw": ("from configs import default\n\ndef get_config():\n  c = default.get_config('smoke')\n"
                          "  c.searcher.kwargs.unknown_knob = 3\n  return c\n"),
      "missing_section": ("from configs import default\n\ndef get_config():\n  c = default.get_config('smoke')\n"
                          "  del c['kd']\n  return c\n"),
  }
  for name, text in configs.items():
    (d / f"{name}.py").write_text(text)
  (d / "a_file").write_text("not a directory")
  from configs import default  # a finished smoke run's record: another config is refused on it
  (d / "finished_run").mkdir()
  smoke = default.get_config("smoke")
  (d / "finished_run" / "config.json").write_text(smoke.to_json_best_effort(indent=1, sort_keys=True))
  (d / "finished_run" / "report.json").write_text(json.dumps({"config": json.loads(smoke.to_json_best_effort())}))
  (d / "empty_tfds").mkdir()  # a TFDS data_dir where no dataset is prepared
  (d / "predictor_other_space").mkdir()  # a DaSS predictor meta-trained on another space
  (d / "predictor_other_space" / "predictor.json").write_text(json.dumps({"meta": {
      "space": {"name": "dass_resnet", "kwargs": {}}, "num_noise": 1, "noise_seed": 0, "map_shape": [8, 8, 256]}}))
  return d


def _npz(name, extra=()):
  return ["--config.data.name=npz", f"--config.data.path={{d}}/{name}.npz", *extra]


# (id, argv after the program name ({d}: the inputs folder, {w}: a fresh workdir), what the line names)
CASES = [
    # -- config file problems
    ("config_missing", ["--config", "{d}/nope.py", "--workdir", "{w}"], "--config: no such file"),
    ("config_missing_variant_file", ["--config", "{d}/nope.py:smoke", "--workdir", "{w}"], "--config: no such file"),
    ("config_is_dir", ["--config", "{d}", "--workdir", "{w}"], "--config: no such file"),
    ("config_syntax", ["--config", "{d}/syntax.py", "--workdir", "{w}"], "syntax.py: syntax error"),
    ("config_no_get_config", ["--config", "{d}/no_get_config.py", "--workdir", "{w}"], "get_config"),
    ("config_import_error", ["--config", "{d}/import_error.py", "--workdir", "{w}"], "jdanas_no_such_module"),
    ("config_raises", ["--config", "{d}/raises.py", "--workdir", "{w}"], "broken config"),
    ("config_not_a_dict", ["--config", "{d}/not_a_dict.py", "--workdir", "{w}"], "--config:"),
    ("config_unknown_variant", ["--config", "configs/default.py:bogus", "--workdir", "{w}"], "unknown variant"),
    ("config_unknown_variant_nb201", ["--config", "configs/nb201_re.py:bogus", "--workdir", "{w}"], "--config:"),
    ("config_missing_section", ["--config", "{d}/missing_section.py", "--workdir", "{w}"], "config.kd: section is missing"),
    # -- absl flag errors
    ("flag_no_workdir", ["--config", SMOKE], "--workdir: required"),
    ("flag_no_config", ["--workdir", "{w}"], "--config: required"),
    ("flag_workdir_no_value", ["--config", SMOKE, "--workdir"], "--workdir"),
    ("flag_rounds_not_int", ["--config", SMOKE, "--workdir", "{w}", "--config.search.rounds=abc"], "--config.search.rounds"),
    ("flag_seed_float", ["--config", SMOKE, "--workdir", "{w}", "--config.seed=1.5"], "--config.seed"),
    ("flag_lr_not_float", ["--config", SMOKE, "--workdir", "{w}", "--config.final.learning_rate=fast"],
     "--config.final.learning_rate"),
    ("flag_positional", ["--config", SMOKE, "--workdir", "{w}", "extra"], "'extra': unexpected argument"),
    ("flag_unknown", ["--config", SMOKE, "--workdir", "{w}", "--bogus=1"], "bogus"),
    ("flag_show_config_value", ["--config", SMOKE, "--show_config=maybe"], "show_config"),
    # -- multi-process launch (flags or JDANAS_* variables; docs/scaling.md)
    ("launch_no_coordinator", ["--config", SMOKE, "--workdir", "{w}", "--num_processes=2", "--process_id=0"],
     "--num_processes (JDANAS_NUM_PROCESSES): given without --coordinator"),
    ("launch_bad_coordinator", ["--config", SMOKE, "--workdir", "{w}", "--coordinator=localhost", "--num_processes=2",
                                "--process_id=0"], "--coordinator (JDANAS_COORDINATOR): 'localhost' is not host:port"),
    ("launch_no_num_processes", ["--config", SMOKE, "--workdir", "{w}", "--coordinator=127.0.0.1:1234",
                                 "--process_id=0"], "--num_processes (JDANAS_NUM_PROCESSES): required"),
    ("launch_process_id_range", ["--config", SMOKE, "--workdir", "{w}", "--coordinator=127.0.0.1:1234",
                                 "--num_processes=2", "--process_id=2"], "--process_id (JDANAS_PROCESS_ID): 2 is not below"),
    ("launch_num_processes_not_int", ["--config", SMOKE, "--workdir", "{w}", "--coordinator=127.0.0.1:1234",
                                      "--num_processes=two", "--process_id=0"], "--num_processes (JDANAS_NUM_PROCESSES)"),
    ("launch_heartbeat", ["--config", SMOKE, "--workdir", "{w}", "--coordinator=127.0.0.1:1234", "--num_processes=2",
                          "--process_id=0", "--heartbeat_timeout=0"], "--heartbeat_timeout (JDANAS_HEARTBEAT_TIMEOUT)"),
    # -- overrides that name nothing
    ("override_population_size", ["--config", SMOKE, "--workdir", "{w}", "--config.population.size=4"],
     "--config.population.size"),
    ("override_searcher_kwarg", ["--config", SMOKE, "--workdir", "{w}", "--config.searcher.kwargs.bogus=4"],
     "--config.searcher.kwargs.bogus"),
    ("override_data_typo", ["--config", SMOKE, "--workdir", "{w}", "--config.data.nmae=npz"], "--config.data.nmae"),
    ("override_deep", ["--config", SMOKE, "--workdir", "{w}", "--config.search.rounds.inner=1"], "--config.search.rounds"),
    ("searcher_unknown_keyword", ["--config", "{d}/bad_searcher_kw.py", "--workdir", "{w}"], "config.searcher.kwargs"),
    # -- config values (validated by building the plan)
    ("teacher_name", ["--config", SMOKE, "--workdir", "{w}", "--config.teacher.name=resnet9000"], "config.teacher.name"),
    ("teacher_path", ["--config", SMOKE, "--workdir", "{w}", "--config.teacher.path=/nonexistent"], "config.teacher.path"),
    ("space_name", ["--config", SMOKE, "--workdir", "{w}", "--config.space.name=darts"], "config.space.name"),
    ("searcher_name", ["--config", SMOKE, "--workdir", "{w}", "--config.searcher.name=bohb"], "config.searcher.name"),
    ("searcher_num_asks", ["--config", SMOKE, "--workdir", "{w}", "--config.searcher.kwargs.num_asks=0"],
     "config.searcher.kwargs"),
    ("evaluator_name", ["--config", SMOKE, "--workdir", "{w}", "--config.evaluator.name=oracle"], "config.evaluator.name"),
    ("evaluator_tabular_table", ["--config", SMOKE, "--workdir", "{w}", "--config.evaluator.name=tabular"],
     "config.evaluator.tabular.table"),
    ("kd_loss", ["--config", SMOKE, "--workdir", "{w}", "--config.kd.loss=fitnet"], "config.kd.loss"),
    ("kd_oracle_aggregate", ["--config", SMOKE, "--workdir", "{w}", "--config.kd.loss=oracle",
                             "--config.kd.oracle_aggregate=max"], "config.kd.oracle_aggregate"),
    ("one_shot_bn", ["--config", "configs/oracle_kd_cifar.py:smoke", "--workdir", "{w}",
                     "--config.evaluator.one_shot.bn=eval"], "config.evaluator.one_shot.bn: 'eval' is not one of running, batch"),
    ("one_shot_derive", ["--config", "configs/oracle_kd_cifar.py:smoke", "--workdir", "{w}",
                         "--config.evaluator.one_shot.derive=-1"], "config.evaluator.one_shot.derive"),
    ("kd_oracle_none_right", ["--config", SMOKE, "--workdir", "{w}", "--config.kd.loss=oracle",
                              "--config.kd.oracle_none_right=kd"], "config.kd.oracle_none_right: 'kd' is not one of ce, average"),
    ("teacher_ensemble", ["--config", SMOKE, "--workdir", "{w}", "--config.teacher.ensemble=0"],
     "config.teacher.ensemble"),
    ("teacher_ensemble_with_path", ["--config", SMOKE, "--workdir", "{w}", "--config.teacher.ensemble=2",
                                    "--config.teacher.path={d}"], "config.teacher.ensemble"),
    ("teacher_ensemble_zero_cost", ["--config", SMOKE, "--workdir", "{w}", "--config.teacher.ensemble=2",
                                    "--config.evaluator.name=zero_cost"], "config.evaluator.name"),
    ("one_shot_needs_masked_space", ["--config", SMOKE, "--workdir", "{w}", "--config.evaluator.name=one_shot"],
     "config.space.name"),
    ("kd_temperature", ["--config", SMOKE, "--workdir", "{w}", "--config.kd.temperature=-1"], "config.kd.temperature"),
    ("search_rounds", ["--config", SMOKE, "--workdir", "{w}", "--config.search.rounds=0"], "config.search.rounds"),
    ("search_top_k", ["--config", SMOKE, "--workdir", "{w}", "--config.search.top_k=0"], "config.search.top_k"),
    ("final_steps", ["--config", SMOKE, "--workdir", "{w}", "--config.final.steps=0"], "config.final.steps"),
    ("final_schedule", ["--config", SMOKE, "--workdir", "{w}", "--config.final.schedule=step"], "config.final.schedule"),
    ("final_seeds", ["--config", SMOKE, "--workdir", "{w}", "--config.final.seeds=0"], "config.final.seeds"),
    ("compute_strategy", ["--config", SMOKE, "--workdir", "{w}", "--config.compute.strategy=pmap"], "config.compute.strategy"),
    ("compute_mesh", ["--config", SMOKE, "--workdir", "{w}", "--config.compute.mesh.pop=3"], "config.compute.mesh"),
    ("compute_precision", ["--config", SMOKE, "--workdir", "{w}", "--config.compute.precision=fp16"],
     "config.compute.precision: 'fp16' is not one of fp32, bf16"),
    ("stall_timeout_negative", ["--config", SMOKE, "--workdir", "{w}", "--config.compute.stall_timeout_s=-1"],
     "config.compute.stall_timeout_s"),
    ("pop_chunk_negative", ["--config", SMOKE, "--workdir", "{w}", "--config.compute.pop_chunk=-2"],
     "config.compute.pop_chunk: must be 0 (a whole group per call) or a positive multiple of compute.mesh.pop"),
    ("stall_timeout_inf", ["--config", SMOKE, "--workdir", "{w}", "--config.compute.stall_timeout_s=inf"],
     "config.compute.stall_timeout_s"),
    ("stall_timeout_not_a_number", ["--config", SMOKE, "--workdir", "{w}", "--config.compute.stall_timeout_s=soon"],
     "--config.compute.stall_timeout_s"),
    ("constraint_negative", ["--config", SMOKE, "--workdir", "{w}", "--config.constraint.max_params=-5"],
     "config.constraint.max_params"),
    ("val_fraction_range", ["--config", SMOKE, "--workdir", "{w}", "--config.data.val_fraction=1.5"],
     "config.data.val_fraction"),
    ("remap_labels_digits", ["--config", SMOKE, "--workdir", "{w}", "--config.data.remap_labels=True"],
     "config.data.remap_labels"),
    ("image_size_negative", ["--config", SMOKE, "--workdir", "{w}", "--config.data.image_size=-1"],
     "config.data.image_size: must be an int >= 0"),
    # -- data
    ("data_unknown_name", ["--config", SMOKE, "--workdir", "{w}", "--config.data.name=no_such_dataset"], "config.data.name"),
    ("data_path_missing", ["--config", SMOKE, "--workdir", "{w}", *_npz("nope")], "config.data.path"),
    ("data_test_path_missing", ["--config", SMOKE, "--workdir", "{w}", *_npz("good", ["--config.data.test_path={d}/nope.npz"])],
     "config.data.test_path"),
    ("data_wrong_keys", ["--config", SMOKE, "--workdir", "{w}", *_npz("wrong_keys")], "config.data.path"),
    ("data_float_images", ["--config", SMOKE, "--workdir", "{w}", *_npz("float_images")], "config.data.path"),
    ("data_negative_labels", ["--config", SMOKE, "--workdir", "{w}", *_npz("negative_labels")], "config.data.path"),
    ("data_length_mismatch", ["--config", SMOKE, "--workdir", "{w}", *_npz("length_mismatch")], "config.data.path"),
    ("data_empty_file", ["--config", SMOKE, "--workdir", "{w}", *_npz("empty")], "config.data.path"),
    ("data_zero_rows", ["--config", SMOKE, "--workdir", "{w}", *_npz("zero_rows")], "config.data.path"),
    ("data_not_a_zip", ["--config", SMOKE, "--workdir", "{w}", *_npz("not_a_zip")], "config.data.path"),
    ("data_labels_2d", ["--config", SMOKE, "--workdir", "{w}", *_npz("labels_2d")], "config.data.path"),
    ("data_images_5d", ["--config", SMOKE, "--workdir", "{w}", *_npz("images_5d")], "config.data.path"),
    ("data_train_test_shapes", ["--config", SMOKE, "--workdir", "{w}",
                                *_npz("good", ["--config.data.test_path={d}/test_shape.npz"])], "config.data.test_path"),
    ("data_too_few_for_val", ["--config", SMOKE, "--workdir", "{w}", *_npz("too_few")], "config.data.val_fraction"),
    ("data_label_gap", ["--config", SMOKE, "--workdir", "{w}", *_npz("label_gap")], "remap_labels"),
    ("data_single_class", ["--config", SMOKE, "--workdir", "{w}", *_npz("single_class")], "single class"),
    ("data_train_limit", ["--config", SMOKE, "--workdir", "{w}", "--config.data.train_limit=-3"], "config.data.train_limit"),
    ("data_tfds_not_prepared", ["--config", AKD, "--workdir", "{w}", "--config.data.data_dir={d}/empty_tfds"],
     "config.data.data_dir: TFDS dataset 'cifar10' is not prepared in"),  # and no absl WARNING lines above it
    # -- workdir
    ("workdir_is_file", ["--config", SMOKE, "--workdir", "{d}/a_file"], "--workdir: "),
    ("workdir_under_file", ["--config", SMOKE, "--workdir", "{d}/a_file/run"], "--workdir: "),
    ("workdir_not_writable", ["--config", SMOKE, "--workdir", "/proc/jdanas_run"], "--workdir: "),
    ("workdir_other_config", ["--config", SMOKE, "--workdir", "{d}/finished_run", "--config.search.rounds=2"],
     "holds a run of another config: config.search.rounds was 3, now 2"),
    ("workdir_other_config_seed", ["--config", SMOKE, "--workdir", "{d}/finished_run", "--config.seed=4"],
     "holds a run of another config: config.seed was 0, now 4"),
    # -- values that used to be checked only after compute
    ("budget_unmeetable", ["--config", SMOKE, "--workdir", "{w}", "--config.constraint.max_params=10"],
     "config.constraint.max_params: no architecture"),
    ("lr_inf_final", ["--config", SMOKE, "--workdir", "{w}", "--config.final.learning_rate=inf"], "config.final.learning_rate"),
    ("lr_inf_teacher", ["--config", SMOKE, "--workdir", "{w}", "--config.teacher.train.learning_rate=inf"],
     "config.teacher.train.learning_rate"),
    ("lr_nan_short_kd", ["--config", SMOKE, "--workdir", "{w}", "--config.evaluator.short_kd.learning_rate=nan"],
     "config.evaluator.short_kd.learning_rate"),
    ("lr_negative", ["--config", SMOKE, "--workdir", "{w}", "--config.final.learning_rate=-0.1"], "config.final.learning_rate"),
    ("wd_inf", ["--config", SMOKE, "--workdir", "{w}", "--config.final.weight_decay=inf"], "config.final.weight_decay"),
    ("space_impossible_network", ["--config", SMOKE, "--workdir", "{w}", "--config.space.kwargs.stem=0"],
     "config.space.kwargs"),
    ("batch_larger_than_train_final", ["--config", SMOKE, "--workdir", "{w}", "--config.final.batch_size=4096"],
     "config.final.batch_size"),
    ("batch_larger_than_train_teacher", ["--config", SMOKE, "--workdir", "{w}", "--config.teacher.train.batch_size=4096"],
     "config.teacher.train.batch_size"),
    ("batch_larger_than_train_limit", ["--config", SMOKE, "--workdir", "{w}", "--config.data.train_limit=20"],
     "batch_size"),
    # -- AKD's latency-aware reward (evaluator.reward) and the CE short run (evaluator.short_kd.distill)
    ("reward_latency_model", ["--config", AKD, "--workdir", "{w}", "--config.evaluator.reward.latency_model=cycles"],
     "config.evaluator.reward.latency_model"),
    ("reward_target", ["--config", AKD, "--workdir", "{w}", "--config.evaluator.reward.target=0"],
     "config.evaluator.reward.target"),
    ("reward_alpha_nan", ["--config", AKD, "--workdir", "{w}", "--config.evaluator.reward.alpha=nan"],
     "config.evaluator.reward.alpha"),
    ("reward_beta_positive", ["--config", AKD, "--workdir", "{w}", "--config.evaluator.reward.beta=0.5"],
     "config.evaluator.reward.beta"),
    ("reward_beta_nan", ["--config", AKD, "--workdir", "{w}", "--config.evaluator.reward.beta=nan"],
     "config.evaluator.reward.beta"),
    ("reward_repeats", ["--config", AKD, "--workdir", "{w}", "--config.evaluator.reward.repeats=0"],
     "config.evaluator.reward.repeats"),
    ("reward_batch_size", ["--config", AKD, "--workdir", "{w}", "--config.evaluator.reward.batch_size=-1"],
     "config.evaluator.reward.batch_size"),
    # -- KDAS's memory penalty: the same reward on the one_shot score (target required once switched on)
    ("oracle_penalty_target", ["--config", "configs/oracle_kd_cifar.py:smoke", "--workdir", "{w}",
                               "--config.evaluator.reward.latency_model=params"], "config.evaluator.reward.target"),
    ("short_kd_distill", ["--config", AKD, "--workdir", "{w}", "--config.evaluator.short_kd.distill=maybe"],
     "--config.evaluator.short_kd.distill"),
    # -- DaSS: the predictor evaluator, the space's own teacher, the remapped final init, the meta_train job
    ("predictor_path_missing", ["--config", DASS, "--workdir", "{w}"], "config.evaluator.predictor.path: required"),
    ("predictor_path_nonexistent", ["--config", DASS, "--workdir", "{w}", "--config.evaluator.predictor.path={d}/nope"],
     "config.evaluator.predictor.path: no predictor.json"),
    ("predictor_other_space", ["--config", DASS, "--workdir", "{w}",
                               "--config.evaluator.predictor.path={d}/predictor_other_space"],
     "config.evaluator.predictor.path: the predictor"),
    ("predictor_adapt", ["--config", DASS, "--workdir", "{w}", "--config.evaluator.predictor.adapt=maybe"],
     "--config.evaluator.predictor.adapt"),
    ("predictor_needs_space_teacher", ["--config", DASS, "--workdir", "{w}", "--config.teacher.name=resnet20",
                                       "--config.evaluator.predictor.path={d}/predictor_other_space"],
     "config.teacher.name: the predictor evaluator needs the space's own full network"),
    ("space_teacher_needs_its_space", ["--config", SMOKE, "--workdir", "{w}", "--config.teacher.name=space"],
     "config.teacher.name: 'space'"),
    ("final_init", ["--config", DASS, "--workdir", "{w}", "--config.final.init=teacher"], "config.final.init"),
    ("data_classes", ["--config", DASS, "--workdir", "{w}", "--config.data.classes=(3,3)"], "config.data.classes"),
    ("job", ["--config", DASS_META, "--workdir", "{w}", "--config.job=train"], "config.job"),
    ("meta_tasks_num_students", ["--config", DASS_META, "--workdir", "{w}", "--config.tasks.num_students=1"],
     "config.tasks.num_students"),
    ("meta_num_queries", ["--config", DASS_META, "--workdir", "{w}", "--config.meta.num_queries=51"],
     "config.meta.num_queries: 51 exceeds"),
    ("meta_target", ["--config", DASS_META, "--workdir", "{w}", "--config.meta.target=log"], "config.meta.target"),
    ("meta_learning_rate", ["--config", DASS_META, "--workdir", "{w}", "--config.meta.learning_rate=nan"],
     "config.meta.learning_rate"),
    ("meta_space", ["--config", DASS_META, "--workdir", "{w}", "--config.space.name=nb201",
                    "--config.space.kwargs={{}}"], "config.space.name: meta-training builds DaSS tasks"),
    ("akd_unknown_option", ["--config", "configs/akd_cifar10.py:runlocal,bogus", "--workdir", "{w}"], "unknown variant"),
]

SUBPROCESS = {"config_missing", "config_syntax", "config_unknown_variant", "flag_no_workdir", "flag_rounds_not_int",
              "override_population_size", "data_label_gap", "launch_process_id_range", "workdir_is_file", "budget_unmeetable", "lr_inf_final",
              "space_impossible_network", "workdir_other_config", "data_tfds_not_prepared"}


def _argv(args, inputs, workdir):
  return [a.format(d=inputs, w=workdir) for a in args]


def _assert_one_error_line(stderr: str, names: str):
  lines = [l for l in stderr.splitlines() if l.strip()]
  assert len(lines) == 1, stderr
  assert lines[0].startswith("error: "), lines[0]
  assert names in lines[0], lines[0]
  assert "Traceback" not in stderr


def test_the_table_covers_every_class():
  assert len(CASES) >= 60
  assert len({c[0] for c in CASES}) == len(CASES)


@pytest.fixture
def no_compute(monkeypatch):
  """Fails the test if a teacher is trained or a search is started."""
  import jdanas.pipeline as pipeline
  import jdanas.pipeline.setup as setup

  def forbidden(*args, **kwargs):
    raise AssertionError("compute started on bad input")

  import jdanas.pipeline.meta_train as meta_train
  monkeypatch.setattr(setup, "train_teacher", forbidden)
  monkeypatch.setattr(setup, "train_space_teacher", forbidden)
  monkeypatch.setattr(pipeline, "search", forbidden)
  monkeypatch.setattr(meta_train, "run_meta_train", forbidden)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_exits_2_with_one_line(case, inputs, tmp_path, capsys, monkeypatch, no_compute):
  name, args, names = case
  monkeypatch.chdir(REPO)
  workdir = tmp_path / "run"
  status = run_cli.main(["run.py", *_argv(args, inputs, workdir)])
  out = capsys.readouterr()
  assert status == 2, out
  _assert_one_error_line(out.err, names)
  assert not workdir.exists()


@pytest.mark.parametrize("case", [c for c in CASES if c[0] in SUBPROCESS], ids=sorted(SUBPROCESS, key=[c[0] for c in CASES].index))
def test_bad_input_as_a_subprocess(case, inputs, tmp_path):
  name, args, names = case
  workdir = tmp_path / "run"
  env = dict(os.environ, PYTHONPATH=str(REPO))
  proc = subprocess.run([sys.executable, "run.py", *_argv(args, inputs, workdir)], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2, proc.stderr
  _assert_one_error_line(proc.stderr, names)
  assert not workdir.exists()


def test_help_lists_the_configs(capsys):
  assert run_cli.main(["run.py", "--help"]) == 0
  out = capsys.readouterr().out
  for path in sorted((REPO / "configs").glob("*.py")):
    if path.name != "__init__.py":
      assert f"configs/{path.name}" in out
  assert "--show_config" in out


def test_help_describes_each_config_by_its_whole_first_sentence(capsys):
  """Not the first docstring line, which stops mid-sentence when the summary runs over two lines."""
  assert run_cli.main(["run.py", "--help"]) == 0
  listing = capsys.readouterr().out.split("available configs", 1)[1]
  assert max(len(line) for line in listing.splitlines()) <= 100
  entries = re.split(r"\n  (?=configs/)", listing)[1:]
  assert len(entries) == len([p for p in (REPO / "configs").glob("*.py") if p.name != "__init__.py"])
  for entry in entries:
    path, text = entry.split(" ", 1)
    text = " ".join(text.split())
    assert text.endswith("."), (path, text)
    assert text == run_cli.first_sentence((REPO / path).read_text().split('"""')[1]), path
  assert run_cli.first_sentence("A (config.job='x') run: one. Two.\nThree.") == "A (config.job='x') run: one."
  assert run_cli.first_sentence("Two lines,\nthe same sentence.\n\nMore.") == "Two lines, the same sentence."


def test_show_config_prints_fields_and_plan_without_compute(capsys, monkeypatch, tmp_path, no_compute):
  monkeypatch.chdir(REPO)
  assert run_cli.main(["run.py", "--config", SMOKE, "--show_config", "--config.search.rounds=5"]) == 0
  out = capsys.readouterr().out
  assert "search.rounds: int = 5" in out
  assert "space.name: str = 's1_resnet'" in out
  assert "space: s1_resnet (8 architectures)" in out
  assert "evaluations: 10 (5 rounds x 2)" in out
  assert "teacher: resnet8 trained for 3 steps" in out


def test_docstring_examples_parse(monkeypatch):
  """Every ``python run.py ...`` line of run.py's docstring parses (no field it names is missing)."""
  monkeypatch.chdir(REPO)
  lines = [l.split("#")[0].split() for l in run_cli.__doc__.splitlines() if l.strip().startswith("python run.py")]
  assert lines
  for words in lines:
    config, workdir, show, launch = run_cli.parse(["run.py", *words[2:]])
    assert config.seed == 0 and (workdir or show)


def test_remap_labels_accepts_a_label_gap(inputs, monkeypatch, tmp_path):
  from jdanas.pipeline import prepare
  from conftest import smoke_config
  c = smoke_config(**{"data.name": "npz", "data.path": str(inputs / "label_gap.npz"), "data.remap_labels": True,
                      "teacher.train.batch_size": 16, "evaluator.short_kd.batch_size": 16, "final.batch_size": 16})
  checked = prepare(c, tmp_path / "run")
  assert checked.data.num_classes == 3
  assert not (tmp_path / "run").exists()
  json.dumps(c.to_dict())  # the config echo stays JSON


# learning_rate=100 leaves the smoke teacher at chance (val 0.118 <= 0.139), finite; 1e6 makes its loss
# non-finite with the safe XLA:CPU flags (with YNNPACK reductions it stayed finite, at chance).
@pytest.mark.parametrize("lr, message", [
    ("100", "error: config.teacher: the teacher resnet8 is no better than chance"),
    ("1e6", "error: config.teacher.train: teacher resnet8: training diverged")])
def test_teacher_at_chance_stops_the_run_before_the_search(lr, message, tmp_path, capsys, monkeypatch):
  """After the teacher (compute), so the console has progress lines; the error is the one ``error:``
  line, the last one, and the search never starts."""
  import jdanas.pipeline  # noqa: F401  (loads jdanas.pipeline.search into sys.modules)
  search_module = sys.modules["jdanas.pipeline.search"]  # the attribute `search` is the function

  def forbidden(*args, **kwargs):
    raise AssertionError("the search started with a teacher at chance")

  monkeypatch.setattr(search_module, "build_evaluator", forbidden)
  monkeypatch.chdir(REPO)
  status = run_cli.main(["run.py", "--config", SMOKE, "--workdir", str(tmp_path / "run"),
                         f"--config.teacher.train.learning_rate={lr}"])
  err = capsys.readouterr().err
  assert status == 2, err
  errors = [l for l in err.splitlines() if l.startswith("error:")]
  assert errors == [err.strip().splitlines()[-1]]
  assert errors[0].startswith(message), errors
  assert "Traceback" not in err
  assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.slow
def test_teacher_at_chance_continues_with_a_warning_when_allowed(tmp_path, capsys, monkeypatch):
  """``teacher.require_above_chance=False``: the same teacher at chance (the test above) no longer
  stops the run; the console and the report say it is at chance."""
  monkeypatch.chdir(REPO)
  workdir = tmp_path / "run"
  status = run_cli.main(["run.py", "--config", SMOKE, "--workdir", str(workdir),
                         "--config.teacher.train.learning_rate=100", "--config.teacher.require_above_chance=False",
                         "--config.search.rounds=1"])
  err = capsys.readouterr().err
  assert status == 0, err
  assert "[teacher] warning: the teacher resnet8 is no better than chance" in err
  assert "continuing because teacher.require_above_chance=False" in err
  assert not [l for l in err.splitlines() if l.startswith("error:")]
  report = json.loads((workdir / "report.json").read_text())
  warnings = report["warnings"]
  assert any(w.startswith("the teacher resnet8 is no better than chance") for w in warnings), warnings
  assert "no better than chance" in (workdir / "report.md").read_text()


def test_show_config_without_the_data(inputs, tmp_path):
  """A TFDS dataset that is not prepared here: --show_config still shows the fields, the allowed
  values and the plan (the data line says why the data is not available), exit 0, nothing on stderr."""
  env = dict(os.environ, PYTHONPATH=str(REPO))
  proc = subprocess.run([sys.executable, "run.py", "--config", AKD, "--show_config",
                         f"--config.data.data_dir={inputs}/empty_tfds", "--config.constraint.max_params=100000"],
                        cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr
  assert proc.stderr.strip() == "", proc.stderr
  out = proc.stdout
  assert "  data.name: str = 'cifar10'" in out
  assert "# allowed values" in out
  assert f"  data: not available (config.data.data_dir: TFDS dataset 'cifar10' is not prepared in {inputs}" in out
  assert "(not checked: the data is not available)" in out  # the budget needs the data's image shape
  assert "  space: " in out and "  final: top " in out


def test_show_config_of_a_meta_train_job_without_the_data(inputs, capsys, monkeypatch, no_compute):
  monkeypatch.chdir(REPO)
  argv = ["run.py", "--config", DASS_META, "--show_config", f"--config.data.data_dir={inputs}/empty_tfds"]
  assert run_cli.main(argv) == 0
  out = capsys.readouterr().out
  assert "  data: not available (config.data.data_dir: TFDS dataset 'cifar100' is not prepared in" in out
  assert "meta-validation): not available" in out
  assert "  meta-training: " in out


def test_show_config_still_refuses_a_bad_field_without_the_data(inputs, capsys, monkeypatch, no_compute):
  """Only the data may be missing: a bad value elsewhere is still the one error line."""
  monkeypatch.chdir(REPO)
  argv = ["run.py", "--config", AKD, "--show_config", f"--config.data.data_dir={inputs}/empty_tfds",
          "--config.final.learning_rate=inf"]
  assert run_cli.main(argv) == 2
  _assert_one_error_line(capsys.readouterr().err, "config.final.learning_rate")


def test_show_config_without_the_dass_predictor(capsys, monkeypatch, no_compute):
  """The predictor a meta_train job writes is an input like the data: --show_config shows the plan
  without it (a real run still stops on it: the predictor_path_missing row)."""
  monkeypatch.chdir(REPO)
  assert run_cli.main(["run.py", "--config", "configs/dass_search.py:smoke", "--show_config"]) == 0
  out = capsys.readouterr().out
  assert "  evaluator input: not available (config.evaluator.predictor.path: required" in out
  assert "evaluator: predictor" in out


@pytest.mark.parametrize("spec", [SMOKE, "configs/dass_meta_train.py:smoke"])
def test_show_config_lists_the_allowed_values_of_every_choice_field(spec, capsys, monkeypatch, no_compute):
  """Every field validated against a fixed set of values (config.CHOICES, which validation reads)
  shows them all under "# allowed values" (compute.precision, kd.oracle_aggregate and
  compute.score_strategy were missing from a hand-written list)."""
  from jdanas.pipeline.config import CHOICES, choices
  monkeypatch.chdir(REPO)
  assert run_cli.main(["run.py", "--config", spec, "--show_config"]) == 0
  out = capsys.readouterr().out
  allowed = out.split("# allowed values\n", 1)[1].split("\n# plan", 1)[0]
  config = run_cli.parse(["run.py", "--config", spec, "--show_config"])[0]
  shown = [f for f in CHOICES if f.startswith("*") or f == "job" or f.split(".")[0] in config]
  expected = {"meta.target"} if "meta" in config else {"compute.precision", "kd.oracle_aggregate",
                                                        "compute.score_strategy"}
  assert expected <= set(shown)
  for field in shown:
    assert f"\n  {field}: {', '.join(map(str, choices(field)))}" in "\n" + allowed, field


def test_every_choice_check_reads_the_declared_choices():
  """Validation looks every fixed-set field up in config.CHOICES (``_one_of(value, field)``) or checks it
  through its section's declaration (jdanas.pipeline.sections), whose choices CHOICES collects: a field
  checked elsewhere against its own tuple would be missing from --show_config."""
  import ast
  from jdanas.pipeline import sections
  from jdanas.pipeline.config import CHOICES
  declared = set(sections.choices())
  assert declared <= set(CHOICES)
  fields = []
  for path in (REPO / "jdanas").rglob("*.py"):
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "_one_of":
        assert len(node.args) == 2 and isinstance(node.args[1], ast.Constant), (path, ast.unparse(node))
        fields.append(node.args[1].value)
  # the evaluators' fields are declared by their schema.Section (jdanas.evaluators), which CHOICES reads
  from jdanas.evaluators import EVALUATORS
  from jdanas.evaluators.reward import SECTION as REWARD
  declared |= {f for section in (*(spec.section for spec in EVALUATORS.values()), REWARD) for f in section.choices()}
  assert set(fields) | declared <= set(CHOICES)
  assert len(set(fields) | declared) >= 15


def test_a_second_main_in_one_process_reads_the_new_config_file(inputs, capsys):
  # ml_collections reuses a loaded config module of the same name: without run.py's reset the second call
  # would run the first file's get_config (here a TFDS config) instead of refusing a file without one.
  assert run_cli.main(["run.py", "--config", DASS_META, "--show_config"]) == 0
  capsys.readouterr()
  assert run_cli.main(["run.py", "--config", str(inputs / "no_get_config.py"), "--show_config"]) == 2
  assert "defines no get_config() function" in capsys.readouterr().err
