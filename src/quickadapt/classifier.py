"""`FewShotClassifier`: quickadapt behind scikit-learn's estimator contract.

`__init__` only stores its arguments (so `get_params`, `clone` and grid search work); `fit`
builds the encoder and adapts it; fitted state ends in `_`."""
from __future__ import annotations

import json
import numbers
import tempfile
import warnings
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from quickadapt.adapt import adapt
from quickadapt.data.dataset import (Dataset, blank, first_half_character, half_character_problem, input_list,
                                     missing_value)
from quickadapt.data.loaders import label_text
from quickadapt.encoders import ENCODER_MODALITY
from quickadapt.errors import BadInput
from quickadapt.model import abstain_threshold, check_none_label, class_indices, shown_score, top_columns, top_count
from quickadapt.select import AUTO


# settings that shape predictions or refits but are not stored in the model itself
# (encoder as the caller gave it: a model folder's rebuilt encoder is named by its architecture)
# strategy too: "auto" and its settings per candidate ({"probe.C": 2}) refit by choosing again
ESTIMATOR_PARAMS = ("encoder", "encoder_params", "seed", "device", "cv", "abstain", "none_label", "threshold",
                    "label_names", "strategy_params", "strategy")  # as the caller gave them (None), not the model's full settings


def _refuse_missing_labels(y: np.ndarray) -> None:
    """A label column's empty cell names its row: no class is made of it."""
    missing = next((i for i, v in enumerate(y) if missing_value(v)), None)
    if missing is not None:
        raise ValueError(f"y[{missing}] is {y[missing]!r}; every example needs a label")


def _refuse_numbers_as_objects(y: np.ndarray) -> None:
    """Numbers of one kind in an array of dtype object (a table's label column that held a gap or a
    word keeps that dtype once those rows are dropped) are of "unknown" type to scikit-learn, in
    fit ('Maybe you are trying to fit a classifier, which expects discrete classes on a regression
    target') and in its metrics (score, cross_val_score) alike: name the conversion that helps."""
    if y.dtype != object or not len(y):
        return
    kinds = {"bool" if isinstance(v, (bool, np.bool_)) else "int" if isinstance(v, numbers.Integral)
             else "float" if isinstance(v, numbers.Real) else "other" for v in y.tolist()}
    if kinds in ({"bool"}, {"int"}, {"float"}, {"int", "float"}):
        kind = "float" if "float" in kinds else kinds.pop()
        # scikit-learn's own words first: its estimator checks look for them
        raise ValueError(f"Unknown label type: y holds {kind} labels in an array of dtype object, which scikit-learn "
                         f"cannot read, here or in its metrics (score, cross_val_score): pass them as numbers, e.g. "
                         f"np.asarray(y, dtype={kind}) (a pandas column: y.astype({kind}))")


class FewShotClassifier(ClassifierMixin, BaseEstimator):
    """Adapt a pretrained encoder to a classification task from a few labelled examples.

    X is a list of strings (text encoders), a list of image paths or uint8 arrays (image
    encoders), or a 2-D array (the `mlp` encoder); a pandas Series, or a one-column DataFrame or
    2-D array, of them too. y holds one label per input: strings, integers, floats or booleans,
    all of one kind; `classes_` keeps their values, sorted, and `predict_proba`'s columns follow it.

    encoder: a name (`quickadapt encoders`: minilm, efficientnet-lite0, conv4, resnet12, mlp), a
        local Hugging Face folder, or a quickadapt model folder (a meta-trained encoder).
    strategy, strategy_params: how it adapts (`quickadapt strategies` lists them and their
        settings), e.g. strategy="finetune", strategy_params={"epochs": 4}; "auto" chooses among
        cheap candidates by cross-validation on X (`cv` folds, 3 if cv is 0), with settings per
        candidate ({"probe.C": 1}) and `budget` (seconds) for costly ones (docs/fit.md).
    encoder_params: the encoder's settings, e.g. {"max_length": 512}.
    cv: folds of the accuracy estimate on the training examples, stored in
        `model_.info["cv_accuracy"]` (0, the default, measures nothing; the command line's
        `fit` uses 3); 2 or more also calibrates the threshold that `abstain` uses, and
        `model_.info["cv_disagreements"]` lists the examples the folds put in another class
        (`row`: the position in X counted from 1; `label` and `predicted` as strings; `score`),
        the most confident first, the likeliest to be mislabelled.
    abstain, none_label, threshold: with abstain=True, predict answers `none_label` where the
        top probability is below `threshold` (None: the one calibrated with `cv`). A threshold
        given alone abstains too, as the command line's --threshold implies --abstain.
    label_names: text only; also learn from each class's name as one more example.
    seed, device: the random seed; "auto", "cpu" or "cuda"."""

    def __init__(
        self,
        encoder: str = "minilm",
        strategy: str = "probe",
        strategy_params: dict | None = None,
        *,
        encoder_params: dict | None = None,
        seed: int = 0,
        device: str = "auto",
        cv: int = 0,
        abstain: bool = False,
        none_label: str = "__none__",
        threshold: float | None = None,
        label_names: bool = False,
    ):
        self.encoder = encoder
        self.strategy = strategy
        self.strategy_params = strategy_params
        self.encoder_params = encoder_params
        self.seed = seed
        self.device = device
        self.cv = cv
        self.abstain = abstain
        self.none_label = none_label
        self.threshold = threshold
        self.label_names = label_names

    def _modality(self) -> str:
        model = self.__dict__.get("model_")
        if model is not None:  # fitted or loaded: its own encoder says, with no file read at each predict
            return model.encoder.modality  # (the folder given as encoder may since be gone, moved or replaced)
        if self.encoder in ENCODER_MODALITY:
            return ENCODER_MODALITY[self.encoder]
        from quickadapt.artifact import MANIFEST, read_manifest
        from quickadapt.encoders import ENCODERS, encoder_modality

        folder = Path(self.encoder)
        # a user's own registered encoder (as resolve_encoder picks: a model folder of that name first)
        if isinstance(self.encoder, str) and self.encoder in ENCODERS and not (folder / MANIFEST).is_file():
            modality = encoder_modality(self.encoder)
            if modality is None:
                raise BadInput(f"encoder {self.encoder!r} does not say what it reads: annotate its factory's return "
                               "type with its Encoder class, whose `modality` is text, image or features")
            return modality
        if not folder.exists():  # a refit of a loaded model whose encoder folder has gone
            raise BadInput(f"encoder {self.encoder!r} is neither an encoder name ({', '.join(ENCODERS.names())}) "
                           f"nor an existing folder")
        if (folder / MANIFEST).is_file():
            return read_manifest(folder)["encoder"]["modality"]
        from quickadapt.encoders import folder_modality

        return folder_modality(folder)  # a Hugging Face folder: its tokenizer or image processor tells

    def _inputs(self, X, *, reset: bool):
        if self._modality() == "features":
            return validate_data(self, X, reset=reset, dtype=np.float64)
        if isinstance(X, str) or not hasattr(X, "__len__"):
            raise ValueError(f"X must be a list of inputs, got {type(X).__name__}")
        X = input_list(X, "X")
        if self._modality() == "text":
            odd = next((i for i, x in enumerate(X) if not isinstance(x, str)), None)
            if odd is not None:  # found by index: None itself is the commonest odd input
                # a table's empty cell (pandas reads one as NaN), or bytes (h5py's and numpy's "S"
                # strings), are no sign of feature vectors
                why = ("a missing value: every input needs some text" if missing_value(X[odd])
                       else "decode them, e.g. [x.decode('utf-8') for x in X]" if isinstance(X[odd], (bytes, bytearray))
                       else "for numeric feature vectors use encoder='mlp'")
                raise ValueError(f"encoder {self.encoder!r} reads text, so X must be strings, got "
                                 f"{type(X[odd]).__name__} at X[{odd}]; {why}")
            # as the loaders refuse an empty `text` cell: an empty input has nothing to classify
            empty = next((i for i, x in enumerate(X) if blank(x)), None)
            if empty is not None:
                raise ValueError(f"X[{empty}] is empty text; every input needs some text")
            half = first_half_character(X)
            if half is not None:
                raise ValueError(f"X[{half}] holds {half_character_problem(X[half])}")
        return X

    def fit(self, X, y):
        """Adapt the encoder to inputs X labelled y; a refit starts again from the encoder."""
        from quickadapt.transfer import STRATEGIES

        # a refit that fails must not leave the last fit's model answering with the new labels
        for fitted in ("classes_", "model_", "_columns", "n_features_in_", "feature_names_in_"):
            self.__dict__.pop(fitted, None)
        if self.strategy != AUTO and STRATEGIES.get(self.strategy).needs_source:
            raise ValueError(f"strategy {self.strategy!r} also trains on a second labelled dataset, which "
                             "FewShotClassifier cannot take: use quickadapt.adapt.adapt(data, source=..., "
                             f"strategy={self.strategy!r}) or the command line's fit --source")
        if self.abstain and self.threshold is None and self.cv < 2:
            raise ValueError("abstain=True needs a confidence threshold: pass threshold=T, or cv=3 (any cv >= 2) "
                             "to calibrate one on the training examples")
        if self.threshold is not None:
            abstain_threshold(None, self.threshold)  # refuse a threshold outside [0, 1] now, not at predict
        modality = self._modality()
        if modality == "features":
            labels = None if y is None else np.asarray(y)
            if labels is not None and labels.dtype == object and labels.ndim == 1:
                _refuse_missing_labels(labels)  # sklearn's check failed on pandas' NA with a TypeError
            X, y = validate_data(self, X, y, dtype=np.float64)
        else:
            X = self._inputs(X, reset=True)
            given, y = y, np.asarray(y)
            if y.ndim == 0:  # None, a dict, a single label: len() failed on it with a TypeError
                raise ValueError(f"y must hold one label per input (a 1-D list or array), got {type(given).__name__}")
            if len(X) != len(y):
                raise ValueError(f"X has {len(X)} inputs but y has {len(y)} labels")
        if y.ndim != 1:  # tuples or rows of labels: one label per input is all a classifier takes
            raise ValueError(f"y must hold one label per input (a 1-D list or array), got shape {y.shape}")
        _refuse_missing_labels(y)  # None, NaN or pandas' NA: sklearn's own checks fail on them with a TypeError
        _refuse_numbers_as_objects(y)
        half = first_half_character(y)
        if half is not None:  # no model folder could be written (UTF-8)
            raise ValueError(f"y[{half}] holds {half_character_problem(y[half])}")
        # quickadapt labels are strings, as the command line reads them from files (1.0 is "1");
        # classes_ keeps the caller's values, mapped back by column
        try:
            classes = np.unique(y)
        except TypeError:  # an object column mixing numbers and text (a spreadsheet's): sklearn's checks
            kinds = ", ".join(sorted({type(v).__name__ for v in y.tolist()}))  # failed on it with a TypeError
            raise ValueError(f"y mixes labels of the types {kinds}, which cannot be sorted into classes_; "
                             "make them one type, e.g. [str(v) for v in y]") from None
        with warnings.catch_warnings():
            # one example per class is the point here, not a sign of a regression target
            warnings.filterwarnings("ignore", message="The number of unique classes is greater than 50%")
            check_classification_targets(y)
        if self._abstaining:
            self._check_none_label_kind(classes)
        first = {}
        for c in classes.tolist():  # Python values, as the caller wrote them
            if label_text(c) in first:
                raise ValueError(f"y holds the labels {first[label_text(c)]!r} and {c!r}, which are one class as "
                                 f"text ({label_text(c)!r}); make them one label or two different ones")
            first[label_text(c)] = c
        # a DataFrame's column names go into the model, as a feature csv's do: `load` restores
        # feature_names_in_ from them (without them a reordered table was read in the wrong order),
        # and the command line's predict reads a csv by them
        names = getattr(self, "feature_names_in_", None)
        data = Dataset(modality, X, [label_text(v) for v in y], columns=None if names is None else list(names))
        model = adapt(
            data, encoder=self.encoder, strategy=self.strategy, strategy_params=self.strategy_params,
            encoder_params=self.encoder_params, seed=self.seed, device=self.device, cv=self.cv,
            label_names=self.label_names, progress=False,
        )
        names = model.classes["main"]
        # columns of predict_proba follow classes_ (np.unique order), not the model's string order
        self._columns = np.asarray([names.index(label_text(c)) for c in classes])
        self.classes_, self.model_ = classes, model
        return self

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, one row per input, one column per class in `classes_` order."""
        check_is_fitted(self, "model_")
        chunks = list(self._proba_chunks(X))
        return np.concatenate(chunks) if chunks else np.zeros((0, len(self.classes_)), dtype=np.float32)

    def _proba_chunks(self, X):
        """`predict_proba`'s rows, PREDICT_CHUNK inputs at a time, for `predict` and `predict_top`,
        which keep a few numbers of each row: holding every row's probabilities at once grows with
        inputs x classes (10,000 inputs of a 10,000-class catalogue: predict peaked at 763 MB,
        predict_top at 1,525 MB)."""
        for _, proba in self.model_.proba_chunks(self._inputs(X, reset=False)):
            yield proba[:, self._columns]

    def predict(self, X) -> np.ndarray:
        """The most probable class of each input (abstaining, `none_label` where unsure)."""
        if self._abstaining:  # checked before the inputs are embedded
            check_is_fitted(self, "model_")
            t = abstain_threshold(self.model_.threshold, self.threshold)
            check_none_label(self.none_label, self.classes_)
            self._check_none_label_kind(self.classes_)
        check_is_fitted(self, "model_")
        columns, top = [], []
        for proba in self._proba_chunks(X):
            columns.append(proba.argmax(1))
            top.append(proba.max(1))
        pred = self.classes_[np.concatenate(columns) if columns else np.zeros(0, dtype=int)]
        if not self._abstaining:
            return pred
        # numbers stay numbers (scikit-learn's metrics read an object array as "unknown" targets)
        numeric = self.classes_.dtype.kind in "biuf" and not isinstance(self.none_label, str)
        out = pred.astype(np.result_type(pred.dtype, np.asarray(self.none_label).dtype) if numeric else object)
        out[[shown_score(s) < t for s in (np.concatenate(top) if top else [])]] = self.none_label
        return out

    def score(self, X, y, sample_weight=None) -> float:
        """The accuracy of `predict(X)` against y, as scikit-learn's `score` gives it. Labels in y
        the model never learnt, which predict can never give, count wrong there as here, but with a
        warning naming them (`quickadapt evaluate` refuses such data): CLINC150's out-of-scope test
        rows labelled "oos" took a 10-intent model's score from 0.88 to 0.66 without a word, 86 of
        those 100 rows answered `none_label`. With abstaining, `none_label` is a label it gives."""
        check_is_fitted(self, "model_")
        known = {label_text(c) for c in self.classes_.tolist()}
        if self._abstaining:
            known.add(label_text(self.none_label))
        given = [label_text(v) for v in np.asarray(y, dtype=object).ravel().tolist()]
        unknown = sorted(set(given) - known)
        if unknown:
            rows = sum(v in unknown for v in given)
            warnings.warn(f"y holds labels the model never learnt ({', '.join(unknown[:5])}"
                          f"{', ...' if len(unknown) > 5 else ''}): their {rows} of {len(given)} rows count wrong; "
                          "leave them out, or for out-of-scope rows label them as none_label with abstain=True",
                          UserWarning, stacklevel=2)
        return super().score(X, y, sample_weight=sample_weight)

    def predict_top(self, X, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Each input's `k` most probable classes (`classes_` values) and their probabilities, the
        most probable first: two arrays of shape (len(X), k), all the classes where there are fewer
        than k (a "did you mean X or Y?"). The first is `predict`'s answer, or the class it withheld
        when it abstains: the ranking is the classes' whatever was answered."""
        check_is_fitted(self, "model_")
        k = top_count(k, len(self.classes_))  # checked before the inputs are embedded
        labels, scores = [], []
        for proba in self._proba_chunks(X):
            columns = top_columns(proba, k)
            labels.append(self.classes_[columns])
            scores.append(np.take_along_axis(proba, columns, axis=1))
        if not labels:
            return self.classes_[np.zeros((0, k), dtype=int)], np.zeros((0, k), dtype=np.float32)
        return np.concatenate(labels), np.concatenate(scores)

    @property
    def _abstaining(self) -> bool:
        """abstain=True, or a threshold given: threshold=0.6 alone answered every input, while
        the command line's --threshold alone abstains."""
        return bool(self.abstain) or self.threshold is not None

    def _check_none_label_kind(self, classes: np.ndarray) -> None:
        """Predictions mixing "__none__" with numbers cannot be compared with y (score,
        cross_val_score and GridSearchCV fail on them): a numeric none_label for numeric labels."""
        if classes.dtype.kind in "biuf" and isinstance(self.none_label, str):
            raise ValueError(f"none_label {self.none_label!r} is text but the labels are numbers: give a number "
                             "that is not a class, e.g. none_label=-1")

    def set_params(self, **params):
        """scikit-learn's nested names reach into the settings dicts: `strategy_params__C=0.1` (a
        grid {"strategy_params__C": [0.1, 1]}, a Pipeline's "fewshotclassifier__strategy_params__C")
        sets that one setting and keeps the others. BaseEstimator's set_params calls the value's
        own set_params, which a dict lacks: an AttributeError on None."""
        for key in [k for k in params if k.split("__", 1)[0] in ("strategy_params", "encoder_params") and "__" in k]:
            name, setting = key.split("__", 1)
            # a new dict: the one the caller gave (or clone copied) stays as it was
            params[name] = {**(params.get(name, getattr(self, name)) or {}), setting: params.pop(key)}
        return super().set_params(**params)

    def save(self, path, *, force: bool = False) -> Path:
        from quickadapt.artifact import save_model

        check_is_fitted(self, "model_")
        # the caller's label values (ints stay ints) and the settings that are not the model's own
        estimator = {"classes": [c.item() if isinstance(c, np.generic) else c for c in self.classes_],
                     "params": {k: self.get_params()[k] for k in ESTIMATOR_PARAMS}}
        try:  # the labels alone: numpy settings (seed=np.int64(3)) are written as numbers, and had
            json.dumps(estimator["classes"])  # made integer labels come back from load as strings
        except TypeError:  # labels JSON cannot hold: they come back as the model's strings
            estimator["classes"] = None
        # messages name the argument as the caller wrote it: "choose another out" named none of theirs
        return save_model(self.model_, path, force=force, seed=self.seed, extra={"estimator": estimator}, flag="path")

    def __getstate__(self):
        """Pickling (joblib.dump, as scikit-learn users store estimators) goes through the model
        folder format, as `save` does: a pretrained encoder is rebuilt from its package on
        loading rather than pickled, which transformers' models do not survive (their output
        hooks are local functions, and an unpickled model returns no hidden states)."""
        from quickadapt.artifact import save_model

        state = dict(super().__getstate__())
        model = state.pop("model_", None)
        if model is not None:
            with tempfile.TemporaryDirectory() as tmp:
                folder = save_model(model, Path(tmp) / "model", seed=self.seed)
                state["_model_files"] = {p.relative_to(folder).as_posix(): p.read_bytes()
                                         for p in sorted(folder.rglob("*")) if p.is_file()}
        return state

    def __setstate__(self, state):
        from quickadapt.artifact import load_model

        state = dict(state)
        files = state.pop("_model_files", None)
        if files is None and state.get("model_") is not None:
            # pickled whole by a quickadapt from before the model folder format: its encoder is an
            # object of an older class, which unpickles without error and fails at predict
            raise ValueError("this FewShotClassifier was pickled by an older quickadapt, which stored its model "
                             "object; load it with that version, call clf.save(FOLDER), then "
                             "FewShotClassifier.load(FOLDER) here")
        super().__setstate__(state)
        if files is not None:
            with tempfile.TemporaryDirectory() as tmp:
                for name, content in files.items():
                    (Path(tmp) / name).parent.mkdir(parents=True, exist_ok=True)
                    (Path(tmp) / name).write_bytes(content)
                self.model_ = load_model(tmp)

    @classmethod
    def load(cls, path) -> "FewShotClassifier":
        """A fitted classifier from a saved model folder. A folder saved by `save` gives back its
        label values and settings; one written by the CLI has string labels, its fit's seed, folds
        and strategy settings, and the defaults for the rest."""
        from quickadapt.artifact import load_model, manifest_errors, read_manifest

        model = load_model(path)
        manifest = read_manifest(path)
        with manifest_errors(Path(path)):  # an edited `estimator` (not an object): one line, as load_model's
            return cls._with_estimator(model, manifest)

    @classmethod
    def _with_estimator(cls, model, manifest: dict) -> "FewShotClassifier":
        estimator = manifest.get("estimator") or {}
        params = {k: v for k, v in (estimator.get("params") or {}).items() if k in ESTIMATOR_PARAMS}
        params.setdefault("label_names", bool(model.info.get("label_names", False)))
        params.setdefault("strategy_params", model.strategy_params)  # a CLI model: its full settings
        params.setdefault("cv", int(model.info.get("cv", 0)))  # 0 for a model older than the record
        params.setdefault("seed", int(manifest.get("seed") or 0))
        # a model folder given as the encoder is rebuilt as its architecture (conv4): refitting
        # must start from the folder, not from that architecture's random weights
        # (a Hugging Face folder: where loading found it, which follows a model moved with it)
        params.setdefault("encoder", model.info.get("encoder_folder") or model.encoder.name)
        params.setdefault("strategy", model.strategy)  # a CLI model, or one saved before the record
        clf = cls(**params)
        clf.model_ = model
        names = model.classes["main"]
        classes = estimator.get("classes")
        if classes is None or sorted(map(label_text, classes)) != sorted(names):
            classes = names
        clf.classes_ = np.asarray(classes)
        # by the label rule: a model fit on the floats 1.0, 2.0 before they were read as 1, 2 stored "1.0", "2.0"
        clf._columns = np.asarray(class_indices(clf.classes_, names))
        if clf._modality() == "features":
            in_dim = manifest["encoder"]["settings"].get("in_dim")
            if in_dim is not None:  # the mlp's; a user's own encoder may call it otherwise (it checks the rows then)
                clf.n_features_in_ = int(in_dim)
            if model.info.get("feature_columns"):  # a DataFrame's or a feature csv's column names
                clf.feature_names_in_ = np.asarray(model.info["feature_columns"], dtype=object)
        return clf
