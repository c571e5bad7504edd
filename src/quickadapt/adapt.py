"""`adapt()`: the one-call library entry point behind `quickadapt fit` and FewShotClassifier.

Validates the pairing of data and encoder, seeds everything, runs the strategy, and measures
what a user needs to trust the result: a cross-validated accuracy estimate on their own
examples, the same estimate for a model that transfers nothing (`baseline=True`), and the
abstain threshold calibrated on out-of-fold confidences. With `label_names=True` (text) every
fit, the baseline's included, also learns from each class's name as one more example
(data/label_names.py); the accuracy estimates score the user's own examples only."""
from __future__ import annotations

import copy
import numbers
import os
import time
import unicodedata
from pathlib import Path

import numpy as np

from quickadapt.artifact import resolve_encoder
from quickadapt.data.columns import match_columns, note_bookkeeping, note_row_numbers
from quickadapt.data import as_dataset
from quickadapt.data.dataset import Dataset, example_key, text_normal_form, zeros_dropped
from quickadapt.data.images import all_grey
from quickadapt.data.label_names import with_label_names
from quickadapt.encoders import ENCODER_MODALITY
from quickadapt.encoders.cache import kept_in_memory
from quickadapt.errors import BadInput, option
from quickadapt.evaluate.baseline import BASELINE_NAMES, fit_baseline
from quickadapt.evaluate.cv import (calibrate_threshold, class_sizes_differ, distinct_examples, mcnemar_p, n_distinct,
                                    n_folds, one_per_example, oof_accuracy, oof_balanced_accuracy,
                                    oof_disagreements, out_of_fold)
from quickadapt.evaluate.metrics import accuracy_interval
from quickadapt.model import AdaptedModel
from quickadapt.progress import each_note_once, log
from quickadapt.select import AUTO, auto_candidates, auto_settings, choose_strategy
from quickadapt.select.strategy import FOLDS as AUTO_FOLDS
from quickadapt.train import (pick_device, random_state_kept, run_environment, seed_everything, usual_torch_modes,
                              weights_finite)
from quickadapt.transfer import FitContext, create_strategy


DEFAULT_ENCODER = {"text": "minilm", "image": "efficientnet-lite0", "features": "mlp"}


def shared_inputs(source: Dataset, data: Dataset) -> tuple[list[bytes | None], set[bytes]]:
    """(each source example's content key where `data` holds the same input, else None; the keys
    of data's inputs). A source drawn from the same pool as the data (--data a few rows of
    --source) would otherwise train each fold on the examples it holds out."""
    keys = {example_key(x, data.modality) for x in data.inputs}
    in_data = [k if k in keys else None for k in (example_key(x, source.modality) for x in source.inputs)]
    shared = sum(k is not None for k in in_data)
    if shared:
        log(f"note: {shared} {option('source')} examples are also in {option('data')}: each cross-validation fold "
            "leaves out of the source those it holds out, so the estimate stays honest")
    return in_data, keys


def is_model_folder(encoder: str) -> bool:
    """Whether `encoder` names a quickadapt model folder (else a registry name or a Hugging Face folder)."""
    from quickadapt.artifact import MANIFEST

    return (Path(str(encoder)) / MANIFEST).is_file()


def learned_before(encoder: str) -> bool:
    """A quickadapt model folder given as the encoder: whether its encoder had learned anything
    (a meta-trained or pretrained stage, a tuned or pretrained one), or only its random start."""
    from quickadapt.artifact import read_manifest

    if not is_model_folder(encoder):
        return False  # a registry name or a Hugging Face folder: is_pretrained says it
    manifest = read_manifest(Path(str(encoder)))
    return manifest.get("kind") != "classifier" or bool(manifest.get("info", {}).get("encoder_learned", True))


def inherited_class_split(encoder: str) -> dict | None:
    """The class split stored with a model folder given as the encoder (meta-training's, its
    pretrained stage's, or one that folder inherited), copied into the new model, so the split
    is not lost when that folder is moved or the model copied elsewhere."""
    from quickadapt.artifact import read_manifest, stored_class_split

    return stored_class_split(read_manifest(Path(str(encoder))))


def check_finite(model: AdaptedModel, data: Dataset, strategy: str) -> None:
    """A fit that diverged (a learning rate or scale far too large for the data) leaves weights or
    scores that are not numbers: refuse it here rather than save a model that answers NaN."""
    weights_ok = weights_finite(model)
    if not weights_ok or not np.isfinite(model.predict_proba(data.inputs[:8])).all():
        raise BadInput(f"strategy {strategy!r} diverged on this data: the fitted model's "
                       f"{'weights' if not weights_ok else 'scores'} are not finite numbers (NaN or inf); lower its "
                       "learning rate or the setting that scales its scores")


def fit_encoder_inputs(encoder, data: Dataset, source: Dataset | None) -> None:
    """Let the encoder learn what reading the inputs needs (mlp: each feature's mean and spread)
    from the examples it trains on: the user's, and the second dataset's where one is given
    (the shared encoder reads both; more rows give steadier statistics)."""
    if not encoder.fits_inputs:
        return
    rows = data.inputs if source is None else np.concatenate([np.asarray(data.inputs), np.asarray(source.inputs)])
    encoder.fit_inputs(rows)


def note_case_twins(classes) -> None:
    """Labels are kept as written, so `Balance` and `balance` are two classes: usually a typo
    that halves a class, so say so (once), without merging what might be meant apart. So are
    `café` typed on a Mac (e + a combining accent) and elsewhere (one é), and `billing` beside
    one with a zero-width space or a no-break space pasted in, which print alike."""
    twins = same_when_folded(classes, text_normal_form)
    if twins:
        pairs = "; ".join(_shown_twins(names) for names in twins[:3])
        log(f"note: labels that differ only in capitals, spacing, invisible characters or in how an accent is "
            f"encoded are different classes: {pairs}"
            f"{f' (and {len(twins) - 3} more)' if len(twins) > 3 else ''}")
    # 01 beside 1: a spreadsheet that read the column as numbers dropped the zeros of some cells
    zeros = same_when_folded(classes, zeros_dropped)
    if zeros:
        pairs = "; ".join(" and ".join(names) for names in zeros[:3])
        log(f"note: labels that differ only in leading zeros are different classes: {pairs}"
            f"{f' (and {len(zeros) - 3} more)' if len(zeros) > 3 else ''}; a spreadsheet that reads the "
            "column as numbers drops the zeros (01 saved as 1): format it as text")


def same_when_folded(classes, fold) -> list[list[str]]:
    """The groups of two or more classes that `fold` makes one, each in the order given."""
    by_folded: dict[str, list[str]] = {}
    for c in classes:
        by_folded.setdefault(fold(c), []).append(c)
    return [names for names in by_folded.values() if len(names) > 1]


def _shown_twins(names: list[str]) -> str:
    """'Balance' and 'balance'; spelled out in code points where two forms of one accent print alike."""
    spell = repr if all(unicodedata.is_normalized("NFC", n) for n in names) else ascii
    return " and ".join(spell(n) for n in names)


@random_state_kept()  # it seeds the global generators: the caller's are put back
@usual_torch_modes()  # it trains, whatever the calling thread switched off
@each_note_once()  # each fold and the final fit would repeat a note about the settings
@kept_in_memory()  # the folds and the final fit embed the same examples: a frozen encoder's once, cache or not
def adapt(
    data: Dataset | str | os.PathLike,
    *,
    encoder: str | None = None,
    strategy: str = "probe",
    strategy_params: dict | None = None,
    encoder_params: dict | None = None,
    source: Dataset | str | os.PathLike | None = None,
    seed: int = 0,
    device: str = "auto",
    cv: int = 3,
    baseline: bool = False,
    label_names: bool = False,
    progress: bool = True,
    for_cache: bool = False,
) -> AdaptedModel:
    """Adapt `encoder` (None: DEFAULT_ENCODER for the data's kind, as `fit` picks it) to the labelled
    `data` with `strategy` (or "auto": the candidate the cross-validation prefers, select/strategy.py;
    `info["auto"]` records them all); return the fitted AdaptedModel with `info` holding `cv_accuracy`,
    `baseline` and `negative_transfer` when they could be measured. `for_cache` (the command
    line, which saves the model and ends): a strategy that keeps the encoder frozen gets a
    pretrained text encoder unbuilt, built at the first text whose features are not cached
    (encoders.create_encoder_for_cache), as predict does."""
    data, source = as_dataset(data), as_dataset(source)  # paths and builtin:NAME, as the command line reads them
    data.require_labels()
    encoder = encoder or DEFAULT_ENCODER[data.modality]
    note_case_twins(data.classes)
    note_row_numbers(data)
    note_bookkeeping(data)
    if isinstance(cv, bool) or not isinstance(cv, numbers.Integral) or cv < 0 or cv == 1:
        raise BadInput(f"{option('cv')} is a number of folds: 0 (no estimate) or at least 2, got {cv}")
    if baseline and cv == 0:
        raise BadInput(f"{option('baseline')} is compared by cross-validation: leave {option('cv')} at 2 or more")
    # folds are drawn from the user's examples; the class names join each training fold
    extend = with_label_names if label_names else (lambda d: d)
    extended = extend(data)  # fails here, before any work, on data that is not text
    dev = pick_device(device)
    auto = strategy == AUTO
    if auto:  # each candidate's own settings (CANDIDATE.KEY=value), checked before any work
        auto_cfg, per_candidate = auto_settings(strategy_params)
        candidates = auto_candidates(data.modality, auto_cfg.budget, per_candidate)

    def new_strategy(name: str | None = None):
        # a fresh instance per fit: some strategies keep per-fit state on themselves
        name = name or strategy  # auto: the chosen one, once chosen
        return create_strategy(name, **((per_candidate.get(name) if auto else strategy_params) or {}))

    strat = new_strategy(candidates[0] if auto else None)  # validates the settings before any work
    strat.check_modality(data)  # before the encoder loads
    if strat.needs_source and source is None:
        raise BadInput(f"strategy {strategy!r} needs a second labelled dataset: pass {option('source')}")
    if source is not None and not strat.needs_source:
        log(f"note: strategy {strategy!r} trains on one dataset; {option('source')} is not used")
    if source is not None:
        source = match_columns(source, data.columns, "the training data")
        # joint shares the data's head with a source whose classes are all data classes: there, more
        # examples of one class are a natural source ("more of class 0"); a head of its own needs two
        source.require_labels(min_classes=1 if strategy == "joint" and source.labels is not None
                              and set(source.classes) <= set(data.classes) else 2)
        if source.modality != data.modality:
            raise BadInput(f"{option('source')} is {source.modality} data but {option('data')} is {data.modality}")
        if data.modality == "features" and np.shape(source.inputs)[1] != np.shape(data.inputs)[1]:
            raise BadInput(f"{option('source')} has {np.shape(source.inputs)[1]} features per example but {option('data')} has "
                           f"{np.shape(data.inputs)[1]}; the shared encoder reads both")

    if ENCODER_MODALITY.get(encoder, data.modality) != data.modality:  # before building it with the data's shape
        raise BadInput(f"encoder {encoder!r} reads {ENCODER_MODALITY[encoder]} but the data is {data.modality}")
    # read once from the files' headers: conv4's input and predict's note on colour depend on it
    grey = all_grey(data.inputs) if data.modality == "image" else None
    seed_everything(seed)  # fixes the random init of encoders that have no pretrained weights
    tunes = any(new_strategy(n).tunes_encoder for n in candidates) if auto else strat.tunes_encoder
    base_encoder = resolve_encoder(encoder, for_cache=for_cache and not tunes, frozen=not tunes,
                                   **_encoder_settings(encoder, data, encoder_params, grey))
    if base_encoder.modality != data.modality:
        raise BadInput(f"encoder {encoder!r} reads {base_encoder.modality} but the data is {data.modality}")
    base_encoder.note_unread_inputs(data.inputs)

    source_in_data = shared_inputs(source, data) if source is not None and cv and cv > 1 else None

    def fit_fold(train: Dataset, name: str | None = None) -> AdaptedModel:
        fold_strategy = new_strategy(name)  # `name`: one of auto's candidates
        # a tuning strategy changes its encoder in place, and an encoder that learns from the
        # inputs (mlp's standardisation) must not see the held-out ones: each fold gets its own copy
        enc = copy.deepcopy(base_encoder) if fold_strategy.tunes_encoder or base_encoder.fits_inputs else base_encoder
        seed_everything(seed)
        fold_source = source
        if source_in_data is not None and len(source_in_data[0]):  # the fold's held-out examples may not train
            held_out = source_in_data[1] - {example_key(x, data.modality) for x in train.inputs}
            fold_source = source.subset([i for i in range(len(source)) if source_in_data[0][i] not in held_out])
            if len(fold_source) == 0:  # else the strategy would say the source has no examples, which is untrue
                raise BadInput(f"every {option('source')} example is also a {option('data')} example that a "
                               f"cross-validation fold holds out; add source examples not in {option('data')}, or "
                               f"pass {option('cv')} 0")
        fit_encoder_inputs(enc, train, fold_source)
        return fold_strategy.fit(enc, extend(train), FitContext(device=dev, seed=seed, source=fold_source, progress=False))

    info: dict = {"n_examples": len(data), "n_classes": len(data.classes), "label_names": bool(label_names),
                  "cv": int(cv or 0)}
    # whether the encoder knew anything before this data (else nothing was transferred), and,
    # for a later fit on this model as --encoder, whether it knows anything after it
    info["encoder_pretrained"] = bool(base_encoder.is_pretrained or learned_before(encoder))
    if is_model_folder(encoder):  # the manifest names only its architecture (conv4), which starts at random
        info["encoder_folder"] = str(Path(encoder).resolve())
        split = inherited_class_split(encoder)
        if split:  # kept here too: episodes on this model must not test on the encoder's training classes
            info["class_split"] = split
    info["data_fingerprint"] = data.fingerprint()  # which examples (and labels) it was adapted on
    # and in any order: evaluate knows the training file shuffled for what it is
    info["data_fingerprint_any_order"] = data.fingerprint_any_order()
    if source is not None and strat.needs_source:  # it trains too: another source, another model
        info["source_fingerprint"] = source.fingerprint()
    info["environment"] = run_environment(dev)  # threads, device and versions: the last bits depend on them
    if grey is not None:  # predict says when colour inputs meet a model that never saw colour
        info["inputs_grey"] = grey
    if data.columns:  # a feature csv's names: predict reads its inputs' columns by them (data/columns.py)
        info["feature_columns"] = list(data.columns)
    started = time.perf_counter()
    folds_bar = "cross-validation folds" if progress else None
    # once: each call hashes every input (an image's whole file); long texts read alike as one
    ids = distinct_examples(data, base_encoder.read_alike(data.inputs))
    if auto:  # every candidate on the same folds; the chosen one's are the estimate (none if cv is 0)
        strategy, oof, info["auto"] = choose_strategy(
            data, candidates, lambda name: (lambda train: fit_fold(train, name)), cv if cv and cv > 1 else AUTO_FOLDS,
            seed, ids, auto_cfg.budget, progress=progress)
        strat = new_strategy()
        oof = oof if cv and cv > 1 else None
    else:
        oof = out_of_fold(data, fit_fold, cv, seed, progress=folds_bar, ids=ids) if cv and cv > 1 else None
    info["encoder_learned"] = info["encoder_pretrained"] or strat.tunes_encoder
    info["cv_seconds"] = round(time.perf_counter() - started, 3)
    distinct = n_distinct(ids)
    if distinct < len(data):  # copies count once in the figures below: say of how many
        info["n_distinct"] = distinct
    # each distinct held-out example once: copies are held out together and answered alike
    kept = one_per_example(ids, oof[0]) if oof is not None else None
    if oof is not None:
        info["cv_accuracy"] = oof_accuracy(data, oof, ids)
        # which examples it got wrong, so a user can look for mislabels (fit prints them with their inputs)
        info["cv_disagreements"] = oof_disagreements(data, oof, ids)
        # the plain figure is mostly the big classes' (100, 100 and 2 examples: 99.5 %, 69.2 % on 30 of each)
        if class_sizes_differ(data.labels[oof[0][kept]]):
            info["cv_balanced_accuracy"] = oof_balanced_accuracy(data, oof, ids)
        info["cv_scored"] = len(kept)
        # 94 % of 50 examples is anywhere from 84 to 98 %: the figure alone reads as more than that
        info["cv_accuracy_ci95"] = accuracy_interval(int(round(info["cv_accuracy"] * len(kept))), len(kept))
        info["cv_folds"] = n_folds(data, cv, ids)  # "cv" keeps what was asked, so a reload refits alike
        if info["cv_scored"] < distinct:
            n = distinct - info["cv_scored"]  # one distinct example each (with any copies of it)
            # nor do they calibrate the threshold: 10 such intents beside 10 of 8 had 71.7 % of their
            # test answers withheld, the others 3.3 %
            info["cv_note"] = (f"{n} {'class has' if n == 1 else 'classes have'} one example: in every training fold, "
                               f"never scored nor in the abstain threshold's calibration, so more of "
                               f"{'its' if n == 1 else 'their'} answers may be withheld")
            scored = set(data.labels[oof[0][kept]])  # predict names them where it withholds their answers
            info["uncalibrated_classes"] = [c for c in data.classes if c not in scored]
    elif cv and cv > 1:
        info["cv_note"] = ("too few examples per class for cross-validation (need 2 in at least 2 classes; "
                           "copies of an example, same input and label, count once)")

    seed_everything(seed)
    started = time.perf_counter()
    fit_encoder_inputs(base_encoder, data, source)
    ctx = FitContext(device=dev, seed=seed, source=source, progress=progress)
    model = new_strategy().fit(base_encoder, extended, ctx)
    info["fit_seconds"] = round(time.perf_counter() - started, 3)  # the final fit alone, embedding included
    check_finite(model, data, strategy)

    # without held-out confidences there is nothing honest to calibrate on (in-sample ones are
    # near 1): the model then abstains only with an explicit threshold
    # each distinct example once, as in the accuracy: a repeated row would weigh its score more;
    # each class alike, so the big ones do not set it alone
    model.threshold = calibrate_threshold(oof[2][kept], data.labels[oof[0][kept]]) if oof is not None else None

    if baseline:
        info["baseline"] = {"name": BASELINE_NAMES[data.modality]}
        if progress:
            log(f"baseline: {BASELINE_NAMES[data.modality]}")
        base_oof = (out_of_fold(data, lambda d: fit_baseline(extend(d), seed=seed, device=dev), cv, seed,
                                progress="baseline cross-validation folds" if progress else None, ids=ids)
                    if cv and cv > 1 else None)
        if base_oof is not None:
            info["baseline"]["cv_accuracy"] = oof_accuracy(data, base_oof, ids)
            if "cv_balanced_accuracy" in info:  # the same figure, to compare like with like
                info["baseline"]["cv_balanced_accuracy"] = oof_balanced_accuracy(data, base_oof, ids)
            if "cv_accuracy" in info:
                info["negative_transfer"] = info["cv_accuracy"] <= info["baseline"]["cv_accuracy"]
                info["p_transfer_better"] = mcnemar_greater(data, oof, base_oof, ids)
                if info["negative_transfer"]:  # the baseline's lead can be noise as much as transfer's
                    info["p_baseline_better"] = mcnemar_greater(data, base_oof, oof, ids)
    model.info.update(info)
    # it only predicts from here, as a loaded one does: left in training mode, a model fit in a
    # service and predicted from several threads ran some of them with dropout (4 of 300 answers
    # off by up to 0.067 from 4 threads), and a row so computed went into the embedding cache
    return model.eval()


def mcnemar_greater(data: Dataset, oof, base_oof, ids: np.ndarray | None = None) -> float | None:
    """`mcnemar_p` that the transferred model beats the baseline (swapped: the reverse) on the
    distinct held-out examples of their out-of-fold predictions, each once (the same folds score
    both; None if they do not). `ids`: `distinct_examples(data)`, when the caller has them."""
    if not np.array_equal(oof[0], base_oof[0]):
        return None
    keep = one_per_example(distinct_examples(data) if ids is None else ids, oof[0])
    truth = data.labels[oof[0][keep]]
    return mcnemar_p(oof[1][keep] == truth, base_oof[1][keep] == truth)


def _encoder_settings(name: str, data: Dataset, params: dict | None, grey: bool | None) -> dict:
    """`grey`: whether every training image is grey (None for other data)."""
    settings = dict(params or {})
    if name == "conv4" and grey is not None and "grey" not in settings:
        # conv4's grey default serves meta-train's Omniglot; on the user's images it would throw
        # away colour that may be all that tells classes apart (the no-transfer baseline and
        # blend's scratch model decide alike, evaluate/baseline.py)
        settings["grey"] = grey
    if name == "mlp" and data.modality == "features":
        width = int(np.asarray(data.inputs).shape[1])
        if settings.setdefault("in_dim", width) != width:
            raise BadInput(f"setting in_dim={settings['in_dim']} for encoder 'mlp' differs from the data's {width} features")
    return settings
