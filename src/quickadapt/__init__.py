"""quickadapt: adapt pretrained models to new tasks from a handful of examples."""
__version__ = "0.1.0"


def __getattr__(name):
    # imported on first use: `import quickadapt` alone must not pull in torch and scikit-learn
    if name == "FewShotClassifier":
        from quickadapt.classifier import FewShotClassifier

        return FewShotClassifier
    raise AttributeError(f"module 'quickadapt' has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *__all__})  # the lazy names too, for tab completion and help()


__all__ = ["FewShotClassifier", "__version__"]
