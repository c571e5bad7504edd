"""quickadapt: adapt pretrained models to new tasks from a handful of examples."""
__version__ = "0.1.0"
