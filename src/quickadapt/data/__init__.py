"""Examples, labels and domains: the `Dataset` type, file loaders and built-in real datasets."""
from quickadapt.data.builtin import list_builtin
from quickadapt.data.dataset import Dataset
from quickadapt.data.loaders import as_dataset, load_dataset

__all__ = ["Dataset", "as_dataset", "load_dataset", "list_builtin"]
