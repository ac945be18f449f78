"""Default: offline, CPU, embedded data. Trains a teacher, then KD-trains a population of students.

Data: scikit-learn's handwritten digits (1,797 8x8 grey images shipped inside the package; no
network). Teacher: CIFAR ResNet-20 trained on the fly (cached in the workdir). Students: 8 distinct
random cells of the masked NAS-Bench-201 space (one cell per stage, C=16), KD-trained together in
ONE compiled program with the RepDistiller loss (0.1 CE + 0.9 T^2 KL, T=4).

Run: python run.py --config configs/default.py --workdir /tmp/jdanas_default
Measured (2-core CPU, XLA:CPU): see the README's "main job" section for the time and results.
"""
import ml_collections


def get_config():
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.data = dict(name="digits", path="", data_dir="", val_fraction=0.1, train_limit=0)
  c.teacher = dict(name="resnet20", path="",
                   train=dict(steps=300, batch_size=64, optimizer="sgd", learning_rate=0.1,
                              weight_decay=5e-4, schedule="cosine", augment=True))
  c.space = dict(name="nb201_masked", kwargs=dict(channels=16, num_cells=1))
  c.population = dict(size=8, strategy="auto")
  c.student = dict(steps=200, batch_size=64, optimizer="sgd", learning_rate=0.1, weight_decay=5e-4,
                   schedule="cosine", augment=True, loss="repdistiller", temperature=4.0)
  c.mesh = dict(pop=1, data=-1)
  return ml_collections.ConfigDict(c)
