"""Ground-truth tables (tabular benchmarks). Never used inside a real search, only to benchmark
searchers and proxies cheaply and to check results."""
