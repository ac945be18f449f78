"""Datasets: host-side loading of images and labels into numpy (see :mod:`jdanas.data.sources`)."""
from jdanas.data.sources import DATA_DIR_ENV, Dataset, Split, load_dataset, shared_data_dir
from jdanas.data.synthetic import synthetic_dataset

__all__ = ["DATA_DIR_ENV", "Dataset", "Split", "load_dataset", "shared_data_dir",
           "synthetic_dataset"]
