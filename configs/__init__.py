"""Experiment configs: each file defines get_config() (run with python run.py --config configs/<x>.py)."""
