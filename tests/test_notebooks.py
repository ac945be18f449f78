"""Executes the notebooks end to end (slow: the quickstart runs the default search, ~5 min on CPU;
02_oracle_kd trains a tiny ensemble and three students, 6 min wall on the loaded 2-core CPU, 2 min of CPU;
03_dass builds a tiny DaSS predictor and ranks candidates, 6 min wall at load 15-18; 04_compare runs
bench/compare_methods.py --quick itself and draws its table and plot)."""
import json
import pathlib

import pytest

NOTEBOOKS = sorted((pathlib.Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
# The line each notebook prints last when it ran to the end.
LAST_OUTPUT = {"00_quickstart.ipynb": "test accuracy of the exported program",
               "01_akd.ipynb": "test accuracy of the exported program",
               "02_oracle_kd.ipynb": "oracle KD test accuracy",
               "03_dass.ipynb": "DaSS ranking of",
               "04_compare.ipynb": "comparison table of"}


def test_every_notebook_has_its_last_output():
  assert sorted(LAST_OUTPUT) == [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_outputs_are_stripped(path):
  nb = json.loads(path.read_text())
  for cell in nb["cells"]:
    if cell["cell_type"] == "code":
      assert cell["outputs"] == [] and cell["execution_count"] is None, f"{path.name}: strip outputs before committing"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_executes(path, tmp_path, monkeypatch):
  nbformat = pytest.importorskip("nbformat")
  nbclient = pytest.importorskip("nbclient")
  monkeypatch.setenv("JDANAS_NOTEBOOK_WORKDIR", str(tmp_path / "workdir"))
  # The kernel is a user's process: one CPU device (the suite's 4 simulated devices made XLA:CPU's
  # all-reduce rendezvous time out on 2 cores and abort the kernel) and no test-session
  # compilation cache.
  for name in ("XLA_FLAGS", "JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS",
               "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"):
    monkeypatch.delenv(name, raising=False)
  nb = nbformat.read(path, as_version=4)
  client = nbclient.NotebookClient(nb, timeout=1800, kernel_name="python3",
                                   resources={"metadata": {"path": str(path.parent)}})
  client.execute()
  outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
  assert LAST_OUTPUT[path.name] in outputs
  assert not any(o.get("output_type") == "error" for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


def _install_cell(path: pathlib.Path) -> str:
  nb = json.loads(path.read_text())
  cells = [c for c in nb["cells"] if c["cell_type"] == "code" and "JDANAS_REPO = " in "".join(c["source"])]
  assert len(cells) == 1, f"{path.name}: one install cell (JDANAS_REPO) expected"
  return "".join(cells[0]["source"])


@pytest.fixture
def shell():
  """An IPython shell in this process whose %pip records its line and then 'installs' jdanas (it
  is importable again), with ``import jdanas`` failing until then, as in a fresh Colab runtime."""
  interactiveshell = pytest.importorskip("IPython.core.interactiveshell")
  import sys
  sh = interactiveshell.InteractiveShell.instance()
  calls = []

  def pip(line):
    calls.append(line)
    sys.modules.pop("jdanas", None)

  sh.register_magic_function(pip, "line", "pip")
  sh.pip_calls = calls
  yield sh
  interactiveshell.InteractiveShell.clear_instance()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_install_cell_does_nothing_when_jdanas_is_importable(path, shell):
  result = shell.run_cell(_install_cell(path))
  assert result.success, result.error_in_exec
  assert shell.pip_calls == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_install_cell_says_what_to_set_and_installs_from_jdanas_repo(path, shell, monkeypatch):
  import sys
  cell = _install_cell(path)
  monkeypatch.setitem(sys.modules, "jdanas", None)  # import jdanas -> ImportError
  result = shell.run_cell(cell)
  assert isinstance(result.error_in_exec, RuntimeError)
  assert str(result.error_in_exec).startswith('jdanas is not installed: set JDANAS_REPO = "https://github.com/')
  assert shell.pip_calls == []
  for repo, spec in (("https://example.org/me/jdanas", "git+https://example.org/me/jdanas"),
                     ("git+https://example.org/me/jdanas@v1", "git+https://example.org/me/jdanas@v1"),
                     ("/content/jdanas", "/content/jdanas")):
    monkeypatch.setitem(sys.modules, "jdanas", None)
    result = shell.run_cell(cell.replace('JDANAS_REPO = ""', f'JDANAS_REPO = "{repo}"', 1))
    assert result.success, result.error_in_exec
    assert shell.pip_calls[-1] == f'install --quiet "{spec}"'
