"""Study configs of ``bench/compare_methods.py`` (one teacher, many methods, one table; docs/compare.md).

A study config is not a pipeline config: :func:`jdanas.benchmarks.compare.arm_config` turns its ``base`` (a
complete pipeline config) into one pipeline config per arm, and its ``final`` section is the one recipe every
arm's chosen student is trained with. One module per study size (``nb201.py``: the NB201 cell space)."""
