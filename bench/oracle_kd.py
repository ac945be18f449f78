"""Oracle KD vs averaged-ensemble KD vs no KD for one backbone student, on CIFAR-10.

Kang, Mun & Han, "Towards Oracle Knowledge Distillation with Neural Architecture Search" (AAAI
2020), at a reduced scale (docs/methods/oracle_kd.md):

  python bench/oracle_kd.py [--quick] [--members 3 --member resnet8 --student resnet8 --seeds 2]
                            [--part rows|search|all --search-backbone resnet8 --search-depths 1,1,2
                             --search-positions 3 --targets 1.3 --rounds 6 --steps-per-round 20 --score-all]
  python bench/oracle_kd.py --part fidelity --member resnet20 --member-steps 1500 --image-size 16 --train-limit 2000
                            --student-steps 500 --rounds 30 --steps-per-round 20 [--search-depths 2,2,2
                            --search-positions 1,2,3 --children 16 --supernets 1] [--teacher-dir DIR]
  python bench/oracle_kd.py --part fidelity --from-jsonl FIDELITY.jsonl --targets 1.05,1.25,1.7 --alpha 1

1. trains an ensemble of M zoo ResNets (member ``i`` from ``fold_in(key, i)``, plain CE) on the
   shared CIFAR-10 subset (``JDANAS_DATA_DIR``) and reports its oracle statistics on the TRAINING
   set (each member's accuracy, the averaged ensemble's, the oracle's, the fractions every / no
   member gets right; Kang et al. Table 5) and its test accuracy;
2. trains the backbone student (a zoo ResNet) with three losses and otherwise identical runs (same
   recipe, steps, batches and initial weights; the S seeds are S students of one population,
   student ``s`` initialised from ``fold_in(key_init, s)``, in one program): (a) ``ce`` (no KD),
   (b) ``repdistiller`` against the averaged ensemble (0.1 CE + 0.9 T^2 KL, T = 4; the "IE"
   teacher), (c) ``oracle`` (L_OD, same weights and T, the mean logits of the correct members);
3. reports test accuracy mean and spread (max - min, and the per-seed values) per row.

With ``--part search`` (instead of step 2) it runs KDAS searches (``kdas_masked`` on a
``--search-backbone`` with ``--search-depths`` blocks per stage, default ResNet-8 with two blocks in
stage 3, since an add-on needs two blocks in its stage and ResNet-8 has one; add-ons after
``--search-positions``, default stage 3 only, 28 architectures, to fit the CPU budget; the ``reinforce`` controller and the ``one_shot`` evaluator with L_OD, the
same controller seed, shared-weight seed and data stream for every search), one without a size
penalty and one per ``--targets`` value with the params reward of :mod:`jdanas.rewards` (hard form
``alpha = 0, beta = -1``; ``T`` = the value x the search backbone's params), and trains each found
student and the search backbone from scratch with L_OD exactly as the backbone rows (same recipe,
steps, batches, seeds): the unpenalised one is the ``searched`` row, all of them the
accuracy-vs-size curve. ``--alpha A > 0`` turns each target into a size target (``accuracy x
(params / T)^A`` under T as well: the best child near T; the upper bound alone never binds when
the one-shot ranking puts parameter-free add-ons first); ``--score-all`` scores every child of the
space with each search's final shared weights (ENAS's derive step), reports them and trains the
best by the search's reward. ``--part all`` runs both parts after one ensemble. ``--part losses``: the
loss study at several member-fit levels (:func:`_loss_study`); ``--part fidelity``: Kendall tau between
one-shot scores (both BatchNorm modes) and the same children trained alone (:func:`_fidelity`), then the
size curve of the derive step over those children (:func:`_fidelity_curve`; ``--from-jsonl`` recomputes it from a
saved run's lines).

Output: JSON lines on stdout: one ``{"row": "ensemble", ...}``, one per student row, and a last
``{"summary": ...}`` line with the oracle-minus-KD and KD-minus-CE gaps of the means (part
``rows``); one ``{"search": ...}`` line per search and one ``{"row": "searched" |
"search_backbone" | "curve", ...}`` line per trained student (part ``search``); a last ``{"done":
...}`` line. Progress goes to stderr. If the data files are absent it prints ``{"skipped":
"<reason>"}`` and exits 0.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import time

import numpy as np

TRAIN_FILE = "cifar10_train_subset.npz"
TEST_FILE = "cifar10_test.npz"
FULL = dict(train_limit=5000, val_size=500, test_limit=2000, member_steps=300, student_steps=300, batch_size=64,
            rounds=6, steps_per_round=20, num_asks=4)
QUICK = dict(train_limit=256, val_size=64, test_limit=200, member_steps=4, student_steps=4, batch_size=32,
             rounds=2, steps_per_round=2, num_asks=2)
PARTS = ("rows", "search", "all", "losses", "fidelity")
# part losses: the same student under each loss; (row, KD preset, none_right of the oracle loss or None)
LOSS_ROWS = (("kd_average", "repdistiller", None), ("oracle", "oracle", "ce"),
             ("oracle_avg_fallback", "oracle", "average"))
ROWS = (("ce", "ce", False), ("kd_average", "repdistiller", True), ("oracle", "oracle", True))


def log(msg: str) -> None:
  print(msg, file=sys.stderr, flush=True)


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--quick", action="store_true", help="smoke run: 256 images, 4 steps (numbers meaningless)")
  p.add_argument("--members", type=int, default=3)
  p.add_argument("--member", default="resnet8", help="zoo model of every ensemble member")
  p.add_argument("--student", default="resnet8", help="zoo model of the backbone student")
  p.add_argument("--seeds", type=int, default=2)
  p.add_argument("--member-steps", type=int, default=None)
  p.add_argument("--student-steps", type=int, default=None)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--part", choices=PARTS, default="rows",
                 help="rows: the backbone trained with CE / averaged KD / L_OD; search: KDAS searches (no penalty "
                      "and one per --targets) and their students trained with L_OD; all: both")
  p.add_argument("--search-backbone", default="resnet8", help="zoo ResNet the KDAS add-ons go on")
  p.add_argument("--search-depths", default="1,1,2",
                 help="blocks per stage of the search backbone ('' = the zoo model's); a stage with an add-on "
                      "needs >= 2 (ResNet-8 has 1 per stage)")
  p.add_argument("--search-widths", default="", help="channels per stage of the search backbone ('' = the zoo model's)")
  p.add_argument("--search-positions", default="3", help="the stages that end with an add-on")
  p.add_argument("--targets", default="1.3",
                 help="params targets of the penalised searches, as multiples of the backbone's params")
  p.add_argument("--alpha", type=float, default=0.0,
                 help="the reward's exponent under the target: 0 = hard upper bound (accuracy x min(1, T / params)); "
                      "> 0 = a size target (children under T lose reward too, accuracy x (params / T)^alpha)")
  p.add_argument("--train", default="searched,search_backbone,curve",
                 help="part search: which rows to train from scratch (comma-separated subset of searched, "
                      "search_backbone, curve; 'none': the searches only)")
  p.add_argument("--rounds", type=int, default=None, help="controller rounds per search")
  p.add_argument("--steps-per-round", type=int, default=None, help="shared-weight steps per round")
  p.add_argument("--fit-steps", default="300,1000,3000",
                 help="part losses: member training steps, one ensemble per value (the member-fit levels)")
  p.add_argument("--image-size", type=int, default=0, help="images resized to this square (0 = as stored, 32)")
  p.add_argument("--train-limit", type=int, default=None, help="training images (default 5000; quick 256)")
  p.add_argument("--score-all", action="store_true",
                 help="part search: after each search, score every child of the space (<= 200) with the final "
                      "shared weights (one-shot accuracy and the search's reward), add the list to its line and "
                      "train the best of them ('derived') instead of the best round's child")
  p.add_argument("--children", type=int, default=28,
                 help="part fidelity: children compared (the whole space if it has no more, else a uniform sample "
                      "that includes the backbone)")
  p.add_argument("--supernets", type=int, default=2,
                 help="part fidelity: shared-weight supernets trained from different seeds (their agreement is the "
                      "one-shot side's noise)")
  p.add_argument("--from-jsonl", default="",
                 help="part fidelity: print the size curve (--targets, --alpha) from a saved fidelity run's JSON lines "
                      "instead of running one (the CIFAR-10 files are not read)")
  p.add_argument("--bn", choices=("running", "batch"), default="running",
                 help="part search: the BatchNorm statistics of child scoring (evaluator.one_shot.bn)")
  p.add_argument("--teacher-dir", default="",
                 help="parts rows/search/fidelity: keep the trained ensemble in this folder and reuse it when the folder "
                      "holds one trained with the same arguments")
  args = p.parse_args(argv)
  if args.members < 2 or args.seeds < 2:
    p.error("--members and --seeds must be >= 2")
  try:
    targets = [float(t) for t in args.targets.split(",") if t.strip()]
  except ValueError:
    p.error(f"--targets: comma-separated numbers > 0, got {args.targets!r}")
  if not all(t > 0 for t in targets):
    p.error(f"--targets: comma-separated numbers > 0, got {args.targets!r}")
  train_rows = set() if args.train == "none" else set(args.train.split(","))
  if not train_rows <= {"searched", "search_backbone", "curve"}:
    p.error(f"--train: a subset of searched, search_backbone, curve, or 'none'; got {args.train!r}")
  args.train_rows = train_rows
  try:
    fit_steps = [int(v) for v in args.fit_steps.split(",") if v.strip()]
  except ValueError:
    fit_steps = []
  if not fit_steps or min(fit_steps) < 1:
    p.error(f"--fit-steps: comma-separated positive ints, got {args.fit_steps!r}")
  cfg = dict(QUICK if args.quick else FULL)
  for name in ("member_steps", "student_steps", "rounds", "steps_per_round", "train_limit"):
    if getattr(args, name) is not None:
      cfg[name] = getattr(args, name)

  if args.part == "fidelity" and args.from_jsonl:
    _curve_from_jsonl(args)
    return
  from jdanas.data import load_dataset, shared_data_dir
  data_dir = shared_data_dir()
  missing = [f for f in (TRAIN_FILE, TEST_FILE) if not (data_dir / f).exists()]
  if missing:
    print(json.dumps({"skipped": f"CIFAR-10 files {missing} not found in {data_dir} (set JDANAS_DATA_DIR)"}))
    return

  import jax

  from jdanas.distill import KD_PRESETS
  from jdanas.spaces import get_space
  from jdanas.teachers import ensemble_report, evaluate
  from jdanas.train import PopulationTrainer, Recipe

  t_start = time.perf_counter()
  data = load_dataset("npz", data_dir=data_dir, path=TRAIN_FILE, test_path=TEST_FILE, val_size=cfg["val_size"],
                      seed=args.seed, train_limit=cfg["train_limit"], test_limit=cfg["test_limit"],
                      image_size=args.image_size or None)
  common = dict(backend=jax.default_backend(), num_train=len(data.train), num_test=len(data.test),
                image_size=int(data.image_shape[0]), batch_size=cfg["batch_size"], quick=args.quick)

  def recipe(steps: int, loss) -> Recipe:
    return Recipe(steps=steps, batch_size=cfg["batch_size"], learning_rate=0.05, weight_decay=5e-4,
                  warmup_steps=max(1, steps // 20), augment=True,
                  loss=KD_PRESETS[loss] if isinstance(loss, str) else loss, eval_batch_size=min(500, len(data.val)))

  if args.part == "fidelity":
    _fidelity(args, cfg, cfg["member_steps"], data, recipe, common)
    print(json.dumps({"done": args.part, "seconds": round(time.perf_counter() - t_start, 1)}), flush=True)
    return
  if args.part == "losses":
    _loss_study(args, cfg, fit_steps, data, recipe, common)
    print(json.dumps({"done": args.part, "seconds": round(time.perf_counter() - t_start, 1)}), flush=True)
    return

  key_teacher, key_student = jax.random.split(jax.random.key(args.seed))
  t0 = time.perf_counter()
  teacher = _ensemble(args, key_teacher, cfg["member_steps"], data, recipe)
  teacher_s = time.perf_counter() - t0
  stats = ensemble_report(teacher, data.train, data.mean, data.std)
  test_stats = ensemble_report(teacher, data.test, data.mean, data.std)
  r4 = lambda x: round(float(x), 4)  # noqa: E731
  print(json.dumps({"row": "ensemble", "model": f"{args.members}x{args.member}", "steps": cfg["member_steps"],
                    "train_members": [r4(a) for a in stats["members"]], "train_average": r4(stats["average"]),
                    "train_oracle": r4(stats["oracle"]), "train_all_right": r4(stats["all_right"]),
                    "train_none_right": r4(stats["none_right"]),
                    "test_members": [r4(a) for a in test_stats["members"]], "test_average": r4(test_stats["average"]),
                    "test_oracle": r4(test_stats["oracle"]), "seconds": round(teacher_s, 1), **common}), flush=True)

  def train_student(space, enc, loss: str, with_teacher: bool, desc: str) -> dict:
    """Trains ``enc`` with ``loss`` (``--seeds`` students of one population) and tests it."""
    t0 = time.perf_counter()
    trainer = PopulationTrainer(space, data, recipe=recipe(cfg["student_steps"], loss),
                                teacher=teacher if with_teacher else None)
    result = trainer.train(key_student, [enc] * args.seeds, desc=desc)
    module = space.build(space.signature(enc), data.num_classes)
    tests = [evaluate(module, result.variables(s), data.test, data.mean, data.std) for s in range(args.seeds)]
    return {"loss": loss, "steps": cfg["student_steps"], "seeds": args.seeds, "test_mean": r4(np.mean(tests)),
            "test_spread": r4(max(tests) - min(tests)), "test_per_seed": [r4(a) for a in tests],
            "val_per_seed": [r4(a) for a in result.accuracy], "num_compilations": result.num_compilations,
            "seconds": round(time.perf_counter() - t0, 1)}

  if args.part in ("rows", "all"):
    _backbone_rows(args, train_student, common, get_space)
  if args.part in ("search", "all"):
    _search_rows(args, cfg, targets, data, teacher, recipe, train_student, common, r4)
  print(json.dumps({"done": args.part, "seconds": round(time.perf_counter() - t_start, 1)}), flush=True)


def _mean_se(values) -> tuple[float, float]:
  v = np.asarray(values, np.float64)
  return float(v.mean()), float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan")


def _ensemble(args, key, level: int, data, recipe):
  """The ``--members`` x ``--member`` ensemble trained ``level`` steps, loaded from ``--teacher-dir`` when it holds
  one made with the same arguments (``bench_args.json``), else trained (and saved there when given)."""
  import pathlib

  from jdanas.lowering import resolve
  from jdanas.teachers import load_teacher, save_teacher, train_ensemble
  stack = resolve("auto").ensemble == "vmap"
  made_with = {"member": args.member, "members": args.members, "steps": level, "seed": args.seed,
               "train_limit": len(data.train) + len(data.val), "image_size": int(data.image_shape[0])}
  folder = pathlib.Path(args.teacher_dir) if args.teacher_dir else None
  if folder is not None and (folder / "bench_args.json").is_file():
    if json.loads((folder / "bench_args.json").read_text()) == made_with:
      log(f"[ensemble] loaded from {folder}")
      return load_teacher(folder, stack=stack)
    raise SystemExit(f"--teacher-dir: {folder} holds an ensemble made with other arguments "
                     f"({(folder / 'bench_args.json').read_text().strip()}); give another folder")
  teacher = train_ensemble(key, [args.member] * args.members, data, recipe=recipe(level, "ce"), stack=stack)
  if folder is not None:
    save_teacher(folder, teacher)
    (folder / "bench_args.json").write_text(json.dumps(made_with) + "\n")
  return teacher


def _kendall(a, b) -> dict:
  """Kendall tau-b of two score vectors, with its p-value (scipy.stats.kendalltau), and Spearman's rho."""
  from scipy import stats
  t = stats.kendalltau(a, b)
  return {"tau": round(float(t.statistic), 3), "p": round(float(t.pvalue), 4),
          "spearman": round(float(stats.spearmanr(a, b).statistic), 3)}


def _fidelity(args, cfg, level: int, data, recipe, common) -> None:
  """Part ``fidelity`` (issue 30 §2): how well one-shot scores rank KDAS children, per BatchNorm mode.

  1. The ensemble of ``--member-steps`` steps (its oracle statistics are printed).
  2. ``--supernets`` shared-weight supernets (:class:`OneShotEvaluator`, L_OD, ``--rounds`` x
     ``--steps-per-round`` steps, seeds ``seed + j``), each trained on ``--num-asks`` children drawn
     uniformly from the space per round (not by a controller: every child is trained about equally often, so
     the ranking measured is the shared weights', not a controller's preference); each then scores the compared
     children with its final weights in both modes of :data:`jdanas.train.oneshot.BN_MODES`: ``running``
     (eval mode, the running averages every child updates) and ``batch`` (ENAS: each held-out batch's own
     statistics).
  3. Every compared child trained alone with L_OD (``--student-steps``, ``--seeds`` initialisations; one
     population, the same batches for every student), its test accuracy.
  4. Kendall tau (and Spearman) between each supernet's scores and the stand-alone mean, per mode; the
     ceilings: tau between stand-alone seed halves (the labels' own agreement) and between the supernets.
  """
  import itertools

  import jax

  from jdanas.evaluators.one_shot import OneShotEvaluator
  from jdanas.teachers import ensemble_report, evaluate
  from jdanas.train import PopulationTrainer
  from jdanas.train.oneshot import BN_MODES

  r4 = lambda x: round(float(x), 4)  # noqa: E731
  key_teacher, key_student = jax.random.split(jax.random.key(args.seed))
  t0 = time.perf_counter()
  teacher = _ensemble(args, key_teacher, level, data, recipe)
  tr, te = (ensemble_report(teacher, split, data.mean, data.std) for split in (data.train, data.test))
  print(json.dumps({"row": "ensemble", "model": f"{args.members}x{args.member}", "member_steps": level,
                    **{f"{name}_{k}": ([r4(a) for a in st[k]] if k == "members" else r4(st[k]))
                       for name, st in (("train", tr), ("test", te))
                       for k in ("members", "average", "oracle", "all_right", "none_right")},
                    "seconds": round(time.perf_counter() - t0, 1), **common}), flush=True)

  kw, exact, masked, backbone = _kdas_spaces(args)
  size = int(np.prod(masked.num_choices))
  rng = np.random.default_rng(args.seed)
  if size <= args.children:
    children = np.asarray(list(itertools.product(*[range(c) for c in masked.num_choices])), np.int32)
  else:  # a uniform sample without repeats, the backbone first
    seen, rows = {exact.decode(backbone)}, [np.asarray(backbone, np.int32)]
    while len(rows) < args.children:
      enc = np.asarray([rng.integers(c) for c in masked.num_choices], np.int32)
      if exact.decode(enc) not in seen:
        seen.add(exact.decode(enc))
        rows.append(enc)
    children = np.stack(rows)
  archs = [exact.decode(e) for e in children]
  log(f"[fidelity] {len(children)} of {size} children of kdas{kw}")

  shared_steps = cfg["rounds"] * cfg["steps_per_round"]
  one_shot, batch = {}, None
  for j in range(args.supernets):
    t0 = time.perf_counter()
    ev = OneShotEvaluator(masked, data, recipe=recipe(shared_steps, "oracle"), steps_per_round=cfg["steps_per_round"],
                          teacher=teacher, seed=args.seed + j, val_examples=0, bn="running")
    draw = np.random.default_rng([args.seed, j])
    for r in range(cfg["rounds"]):
      ev(None, np.stack([np.asarray([draw.integers(c) for c in masked.num_choices], np.int32)
                         for _ in range(cfg["num_asks"])]))
    one_shot[(j, "running")] = ev.score(children)
    if batch is None:  # one batch-statistics scorer (its programs compile once), given each supernet's weights
      batch = OneShotEvaluator(masked, data, recipe=recipe(shared_steps, "oracle"),
                               steps_per_round=cfg["steps_per_round"], teacher=teacher, seed=args.seed,
                               val_examples=0, bn="batch")
    batch.restore(ev.state())
    one_shot[(j, "batch")] = batch.score(children)
    log(f"[fidelity] supernet {j}: {shared_steps} steps and scoring in {time.perf_counter() - t0:.0f} s")

  t0 = time.perf_counter()
  trainer = PopulationTrainer(masked, data, recipe=recipe(cfg["student_steps"], "oracle"), teacher=teacher)
  population = [e for e in children for _ in range(args.seeds)]
  result = trainer.train(key_student, population, desc="stand-alone children")
  module = masked.build(masked.signature(children[0]), data.num_classes)  # one signature: one eval program
  tests = np.asarray([evaluate(module, result.variables(i), data.test, data.mean, data.std, enc=e)
                      for i, e in enumerate(population)])
  tests = tests.reshape(len(children), args.seeds)
  alone = tests.mean(axis=1)
  train_s = time.perf_counter() - t0
  log(f"[fidelity] stand-alone training of {len(population)} students in {train_s:.0f} s")
  half = args.seeds // 2
  for i in np.argsort(-alone, kind="stable"):
    print(json.dumps({"child": archs[i], "test_per_seed": [r4(a) for a in tests[i]], "test_mean": r4(alone[i]),
                      **{f"one_shot_{mode}_{j}": r4(one_shot[(j, mode)][i]) for j in range(args.supernets)
                         for mode in BN_MODES}}), flush=True)
  summary = {"children": len(children), "space_size": size, "space": {k: list(v) if isinstance(v, tuple) else v
                                                                       for k, v in kw.items()},
             "shared_steps": shared_steps, "num_asks": cfg["num_asks"], "student_steps": cfg["student_steps"],
             "seeds": args.seeds, "supernets": args.supernets, "member_steps": level,
             "stand_alone_mean": r4(alone.mean()), "stand_alone_range": [r4(alone.min()), r4(alone.max())],
             "stand_alone_seed_sd": r4(np.mean(tests.std(axis=1, ddof=1))) if args.seeds > 1 else None,
             "train_seconds": round(train_s, 1)}
  if args.seeds >= 2:  # the labels' own agreement: two disjoint halves of the initialisations
    summary["labels_half_vs_half"] = _kendall(tests[:, :half].mean(axis=1), tests[:, half:].mean(axis=1))
  for mode in BN_MODES:
    summary[f"tau_{mode}"] = [_kendall(one_shot[(j, mode)], alone) for j in range(args.supernets)]
    if args.supernets >= 2:
      summary[f"supernets_agree_{mode}"] = _kendall(one_shot[(0, mode)], one_shot[(1, mode)])
  print(json.dumps({"summary": summary, **common}), flush=True)
  rows = [{"child": archs[i], "test_per_seed": list(tests[i]),
           **{f"one_shot_{mode}_{j}": float(one_shot[(j, mode)][i]) for j in range(args.supernets) for mode in BN_MODES}}
          for i in range(len(archs))]
  _fidelity_curve(rows, exact, data.num_classes, tuple(data.image_shape), _targets(args), args.alpha)


def _targets(args) -> list[float]:
  return [float(t) for t in args.targets.split(",") if t.strip()]


def _fidelity_curve(rows: list[dict], exact, num_classes: int, input_shape: tuple, targets, alpha: float) -> None:
  """The accuracy-vs-size curve of ENAS's derive step over the fidelity study's children: for no budget and each
  size target ``T`` (``targets`` x the backbone's params; reward ``accuracy x (params / T)^w``, ``w = alpha`` under
  ``T``, -1 over it, as part search), the child each supernet's final weights pick by reward in each BatchNorm
  mode (``rows``' ``one_shot_<mode>_<j>`` columns), with its stand-alone L_OD test accuracy, and the ``perfect``
  pick (the same reward on the stand-alone accuracies: what a ranking without error would choose). One
  ``{"curve": ...}`` line per (target, mode, supernet)."""
  from jdanas import costs
  from jdanas import rewards as rewards_lib
  r4 = lambda x: round(float(x), 4)  # noqa: E731
  archs = [r["child"] for r in rows]
  params = np.asarray([costs.model_costs(exact, exact.encode(a), num_classes=num_classes, input_shape=input_shape,
                                         flops=False).params for a in archs], np.float64)
  backbone = costs.model_costs(exact, exact.encode("|".join(["identity:00"] * (exact.num_decisions // 3))),
                               num_classes=num_classes, input_shape=input_shape, flops=False).params
  alone = np.asarray([np.mean(r["test_per_seed"]) for r in rows])
  columns = sorted(k for k in rows[0] if k.startswith("one_shot_"))

  def pick(acc, target):
    score = acc if target is None else rewards_lib.reward(acc, params, target=target * backbone, alpha=alpha, beta=-1.0)
    return int(np.argmax(score))

  for target in [None] + list(targets):
    best = pick(alone, target)
    perfect = {"pick": archs[best], "params": int(params[best]), "test_mean": r4(alone[best])}
    for col in columns:
      mode, j = col[len("one_shot_"):].rsplit("_", 1)
      i = pick(np.asarray([r[col] for r in rows]), target)
      print(json.dumps({"curve": {"target_x_backbone": target, "alpha": alpha, "mode": mode, "supernet": int(j),
                                  "pick": archs[i], "params": int(params[i]), "x_backbone": r4(params[i] / backbone),
                                  "test_mean": r4(alone[i]), "test_per_seed": [r4(a) for a in rows[i]["test_per_seed"]]},
                        "perfect": perfect, "backbone_params": int(backbone)}), flush=True)


def _curve_from_jsonl(args) -> None:
  """``--part fidelity --from-jsonl FILE``: the curve lines of :func:`_fidelity_curve` from a saved fidelity run's
  child and summary lines (nothing trained)."""
  import pathlib
  lines = [json.loads(l) for l in pathlib.Path(args.from_jsonl).read_text().splitlines() if l.strip()]
  rows = [l for l in lines if "child" in l]
  (summary,) = [l for l in lines if "summary" in l]
  if not rows:
    raise SystemExit(f"--from-jsonl: no child lines in {args.from_jsonl}")
  from jdanas.spaces import get_space
  kw = {k: tuple(v) if isinstance(v, list) else v for k, v in summary["summary"]["space"].items()}
  size = summary["image_size"]
  _fidelity_curve(rows, get_space("kdas", **kw), 10, (size, size, 3), _targets(args), args.alpha)


def _loss_study(args, cfg, fit_steps, data, recipe, common) -> None:
  """Part ``losses``: the student under CE (once: it needs no teacher), then for each member-fit level (an
  ensemble trained ``fit_steps[i]`` steps) averaged-ensemble KD, L_OD and L_OD with the averaged-KD fallback on
  examples no member gets right (:func:`jdanas.distill.oracle_kd_loss`, ``none_right="average"``, a jdanas
  variant). Every row trains the ``--seeds`` students of one population from the same initial weights and
  batches, so the differences between rows are paired by seed: each level's summary gives mean +- s.e. of the
  test accuracy per row and of the paired differences that decide the paper's ordering (oracle > averaged KD >
  CE)."""
  import dataclasses

  import jax

  from jdanas.distill import KD_PRESETS
  from jdanas.lowering import resolve
  from jdanas.spaces import get_space
  from jdanas.teachers import ensemble_report, evaluate, train_ensemble
  from jdanas.train import PopulationTrainer

  r4 = lambda x: round(float(x), 4)  # noqa: E731
  key_teacher, key_student = jax.random.split(jax.random.key(args.seed))
  space = get_space("zoo", models=(args.student,))
  enc = space.encode(args.student)
  module = space.build(space.signature(enc), data.num_classes)

  def student(loss, teacher, desc: str) -> list[float]:
    t0 = time.perf_counter()
    trainer = PopulationTrainer(space, data, recipe=recipe(cfg["student_steps"], loss), teacher=teacher)
    result = trainer.train(key_student, [enc] * args.seeds, desc=desc)
    tests = [evaluate(module, result.variables(s), data.test, data.mean, data.std) for s in range(args.seeds)]
    log(f"[losses] {desc}: test {np.mean(tests):.4f} ({time.perf_counter() - t0:.0f} s)")
    return tests

  ce = student("ce", None, f"{args.student} ce")
  m, se = _mean_se(ce)
  print(json.dumps({"row": "ce", "student": args.student, "steps": cfg["student_steps"], "seeds": args.seeds,
                    "test_mean": r4(m), "test_se": r4(se), "test_per_seed": [r4(a) for a in ce], **common}), flush=True)
  for level in fit_steps:
    t0 = time.perf_counter()
    teacher = train_ensemble(key_teacher, [args.member] * args.members, data, recipe=recipe(level, "ce"),
                             stack=resolve("auto").ensemble == "vmap", progress=False)
    tr, te = (ensemble_report(teacher, split, data.mean, data.std) for split in (data.train, data.test))
    print(json.dumps({"row": "ensemble", "model": f"{args.members}x{args.member}", "member_steps": level,
                      **{f"{name}_{k}": ([r4(a) for a in st[k]] if k == "members" else r4(st[k]))
                         for name, st in (("train", tr), ("test", te))
                         for k in ("members", "average", "oracle", "all_right", "none_right")},
                      "seconds": round(time.perf_counter() - t0, 1), **common}), flush=True)
    rows = {"ce": ce}
    for row, preset, none_right in LOSS_ROWS:
      loss = KD_PRESETS[preset]
      if none_right is not None:
        loss = dataclasses.replace(loss, oracle_none_right=none_right)
      rows[row] = student(loss, teacher, f"{args.student} {row} (members {level} steps)")
      m, se = _mean_se(rows[row])
      print(json.dumps({"row": row, "student": args.student, "member_steps": level, "steps": cfg["student_steps"],
                        "seeds": args.seeds, "test_mean": r4(m), "test_se": r4(se),
                        "test_per_seed": [r4(a) for a in rows[row]], **common}), flush=True)
    diffs = {}
    for a, b in (("oracle", "kd_average"), ("kd_average", "ce"), ("oracle", "ce"), ("oracle_avg_fallback", "oracle"),
                 ("oracle_avg_fallback", "kd_average")):
      m, se = _mean_se(np.subtract(rows[a], rows[b]))
      diffs[f"{a}_minus_{b}"] = {"mean": r4(m), "se": r4(se)}
    print(json.dumps({"summary": {"member_steps": level, "train_none_right": r4(tr["none_right"]),
                                  "train_average": r4(tr["average"]), "paired_differences": diffs}}), flush=True)


def _backbone_rows(args, train_student, common, get_space) -> None:
  """The backbone trained with CE, averaged-ensemble KD and L_OD, and the summary line."""
  space = get_space("zoo", models=(args.student,))
  enc = space.encode(args.student)
  means = {}
  for row, loss, with_teacher in ROWS:
    out = train_student(space, enc, loss, with_teacher, f"{args.student} {row}")
    means[row] = out["test_mean"]
    print(json.dumps({"row": row, "student": args.student, **out, **common}), flush=True)
  print(json.dumps({"summary": {"oracle_minus_kd": round(means["oracle"] - means["kd_average"], 4),
                                "kd_minus_ce": round(means["kd_average"] - means["ce"], 4),
                                "oracle_minus_ce": round(means["oracle"] - means["ce"], 4)}}), flush=True)


def _kdas_spaces(args):
  """The KDAS space of ``--search-*`` (its keyword arguments, exact and masked forms) and its backbone's
  encoding (every add-on ``identity``)."""
  from jdanas.spaces import get_space
  kw = dict(backbone=args.search_backbone, positions=tuple(int(v) for v in args.search_positions.split(",")))
  for name in ("depths", "widths"):
    if getattr(args, f"search_{name}"):
      kw[name] = tuple(int(v) for v in getattr(args, f"search_{name}").split(","))
  if "widths" in kw:
    kw["stem"] = kw["widths"][0]
  exact, masked = get_space("kdas", **kw), get_space("kdas_masked", **kw)
  return kw, exact, masked, exact.encode("|".join(["identity:00"] * (masked.num_decisions // 3)))


def _search_rows(args, cfg, targets, data, teacher, recipe, train_student, common, r4) -> None:
  """KDAS searches (no penalty, then one params target each), then the students trained with L_OD:
  the unpenalised search's (``searched``), the search backbone (``search_backbone``) and the
  penalised searches' (``curve``), in that order (the first rows are the ones a timeout keeps)."""
  import jax

  from jdanas import costs
  from jdanas import rewards as rewards_lib
  from jdanas.evaluators.one_shot import OneShotEvaluator
  from jdanas.evaluators.reward import RewardEvaluator
  from jdanas.rewards import LatencyModel
  from jdanas.searchers import SEARCHERS

  kw, exact, masked, backbone = _kdas_spaces(args)
  sizes_cache: dict[str, int] = {}

  def params(enc) -> int:
    arch = exact.decode(enc)
    if arch not in sizes_cache:
      sizes_cache[arch] = costs.model_costs(exact, enc, num_classes=data.num_classes,
                                            input_shape=tuple(data.image_shape), flops=False).params
    return sizes_cache[arch]

  backbone_params = params(backbone)
  shared_recipe = recipe(cfg["rounds"] * cfg["steps_per_round"], "oracle")
  searcher = SEARCHERS["reinforce"](masked, num_asks=cfg["num_asks"])
  ask, tell = jax.jit(searcher.ask), jax.jit(searcher.tell)
  key_search = jax.random.fold_in(jax.random.key(args.seed), 1)
  # One evaluator (its step and score programs compile once); every search starts from the same
  # initial shared weights and data position.
  one_shot = OneShotEvaluator(masked, data, recipe=shared_recipe, steps_per_round=cfg["steps_per_round"],
                              teacher=teacher, seed=args.seed, val_examples=0, bn=args.bn)
  initial = jax.tree.map(np.array, one_shot.state())
  latency = LatencyModel("params", masked, num_classes=data.num_classes, input_shape=tuple(data.image_shape))
  found = []
  for target in [None] + targets:
    t0 = time.perf_counter()
    one_shot.restore(initial)
    evaluator, reward = one_shot, None
    if target is not None:  # accuracy x (params / T)^w, w = alpha under T (0: hard form), -1 over it
      reward = dict(latency_model="params", target=target * backbone_params, alpha=args.alpha, beta=-1.0)
      evaluator = RewardEvaluator(one_shot, latency, target=reward["target"], alpha=args.alpha, beta=-1.0)
    state = jax.jit(searcher.init)(key_search)
    best = (-np.inf, None, None)
    last: dict[str, float] = {}  # the last round's children -> one-shot accuracy
    for r in range(cfg["rounds"]):
      k_ask, k_eval, k_tell = jax.random.split(jax.random.fold_in(key_search, r), 3)
      encs, state = ask(k_ask, state)
      encs = np.asarray(encs)
      ev = evaluator(k_eval, encs)
      state, _ = tell(k_tell, state, encs, ev.scores)
      accuracy = ev.extras["accuracy"] if ev.extras else ev.scores
      i = int(np.argmax(ev.scores))
      if ev.scores[i] > best[0]:
        best = (float(ev.scores[i]), encs[i], float(accuracy[i]))
      if r == cfg["rounds"] - 1:
        last = {exact.decode(e): r4(acc) for e, acc in zip(encs, accuracy)}
      log(f"[search target={target}] round {r}: best score {best[0]:.4f}")
    arch = exact.decode(best[1])
    found.append((target, arch))
    every = {}
    if args.score_all:  # ENAS's derive step over the whole space: [arch, params, accuracy, reward]
      grid = np.asarray(list(itertools.product(*[range(c) for c in masked.num_choices])), np.int32)
      if len(grid) > 200:
        raise SystemExit(f"--score-all: the space has {len(grid)} architectures (> 200)")
      accs = one_shot.score(grid)
      sizes = np.asarray([params(e) for e in grid])
      rewards = accs if target is None else rewards_lib.reward(accs, sizes, target=reward["target"],
                                                               alpha=args.alpha, beta=-1.0)
      order = np.argsort(-rewards, kind="stable")
      every["all_children"] = [[exact.decode(grid[i]), int(sizes[i]), r4(accs[i]), r4(rewards[i])] for i in order]
      every["derived"] = every["all_children"][0][0]  # trained below instead of the best round's child
      found[-1] = (target, every["derived"])
    print(json.dumps({"search": {"space": {k: list(v) if isinstance(v, tuple) else v for k, v in kw.items()},
                                 "target_x_backbone": target, "reward": reward, "bn": args.bn},
                      "arch": arch, "params": params(best[1]), "backbone_params": backbone_params,
                      "score": r4(best[0]), "one_shot_accuracy": r4(best[2]),
                      "last_round": [[a, params(exact.encode(a)), acc] for a, acc in sorted(
                          last.items(), key=lambda kv: -kv[1])],
                      **every, "rounds": cfg["rounds"],
                      "num_asks": cfg["num_asks"], "steps_per_round": cfg["steps_per_round"],
                      "seconds": round(time.perf_counter() - t0, 1), **common}), flush=True)
  backbone_arch = exact.decode(backbone)
  trained: dict[str, dict] = {}
  for row, target, arch in [("searched", None, found[0][1]), ("search_backbone", None, backbone_arch)] + [
      ("curve", t, a) for t, a in found[1:]]:
    if row not in args.train_rows:
      continue
    if arch not in trained:
      trained[arch] = train_student(exact, exact.encode(arch), "oracle", True, f"{row} {arch}")
    print(json.dumps({"row": row, "target_x_backbone": target, "arch": arch,
                      "params": params(exact.encode(arch)), "backbone_params": backbone_params, **trained[arch],
                      **common}), flush=True)


if __name__ == "__main__":
  main()
