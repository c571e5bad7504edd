"""`adapt_domain()`: the one-call entry point behind `quickadapt domain-adapt`.

Checks the inputs, holds out part of the labelled source for label-free validation, fits the
method and, beside it, the source-only baseline with the same encoder initialisation, batches and
steps; scores both with the validator (the negative-transfer guard) and, only when labelled
target test data is given, measures their real target accuracy (the oracle, for evaluation
only: it never chooses anything). `method="auto"` fits each candidate and keeps the one the
validator prefers, source-only included, so it falls back to source-only when adaptation
looks worse. The chosen method is then refitted on all of the source (`refit`), as a grid
search refits its winner: the held-out part has done its job of choosing."""
from __future__ import annotations

import copy
import os
import time

import numpy as np

from quickadapt.data.columns import match_columns, note_bookkeeping, note_row_numbers
from quickadapt.data.dataset import Dataset
from quickadapt.errors import BadInput, MissingLabel, option
from quickadapt.evaluate.cv import paired_lead_se
from quickadapt.model import AdaptedModel
from quickadapt.progress import each_note_once, log
from quickadapt.registry import close_names
from quickadapt.train import pick_device, random_state_kept, run_environment, seed_everything, usual_torch_modes

DEFAULT_ENCODER = {"features": "mlp", "text": "minilm", "image": "conv4"}
AUTO_CANDIDATES = ("mcc", "cdan-e", "dann", "meda")  # tried by method="auto", besides source-only
# the mlp for feature vectors here: one wide layer with strong dropout (chosen on the development
# pairs A->W, C->D, W->C of Office-Caltech: deeper or lighter-regularised nets overfit the source)
DOMAIN_MLP = {"depth": 1, "dropout": 0.5}
# a candidate whose target predictions spread over classes less than this fraction of
# source-only's (entropy of the mean prediction) has collapsed: the weighted-source validators
# cannot see that (the collapsed target region holds no source examples), so the guard vetoes it.
# 0.8: on typo-noised CLINC text mcc won by DEV at 0.72 and 0.79 of source-only's spread and lost
# 20 and 26 points of target accuracy; no Office-Caltech candidate ever fell below 0.9
COLLAPSE_RATIO = 0.8
# the kept model answers most target inputs with few classes when the entropy of its answers
# (hard predictions' class shares) on the target is below this fraction of log(K), K the source's
# classes (log K: every class answered alike). Half of log K is the spread of sqrt(K) classes
# answered equally, so a balanced target (log K) or a moderately imbalanced one stays above it
# (two classes at 85/15: 0.61 of log 2). Answers, not the mean prediction that the collapse veto
# reads: an unsure mlp answered all 897 shifted digits with one class while its mean prediction
# kept 0.69 of log 10. Entropy, not a count of classes answered: 145 of 150 answers in one class
# can still name every class once. Measured (fraction of log K; bench/results record only the mean
# prediction, so these were rerun, seed 0): Office-Caltech source-only and mcc on the 12 pairs,
# cdan-e and meda on 11, 0.90 at the lowest; conv4 digits rotated (source-only 33 %) 0.65, inverted (8 %) 0.80;
# a tester's light-on-dark blurred digits, source-only at chance with 145 of 150 answers in one class, 0.10
FEW_CLASSES_FRACTION = 0.5


def check_inputs(source: Dataset, target: Dataset, target_test: Dataset | None = None) -> tuple[Dataset, list[str]]:
    """Validate the pairing; return the target without labels and the warnings to show."""
    source.require_labels()
    if len(target) < 2:
        raise BadInput(f"{target.name or 'target'}: the target has {len(target)} examples; adaptation needs at least 2")
    if len(source) < 5:
        raise BadInput(f"{source.name or 'source'}: the source has {len(source)} examples; adaptation needs at least 5")
    if source.modality != target.modality:
        raise BadInput(f"source is {source.modality} data but the target is {target.modality}")
    _check_dims(source, target, "target")
    warnings = []
    n_classes = len(source.classes)
    if len(target) < n_classes:  # not one example per class: the target cannot show how each class shifted
        warnings.append(f"{target.name or 'the target'} has {len(target)} examples, fewer than the source's {n_classes} "
                        "classes: adaptation and its label-free scores rest on too few to tell how the target differs")
    shared = source_inputs_in(target, source)
    if 2 * shared > len(target):  # the source given twice, or a target drawn from the source's pool: no shift
        held = ("every target input is also a source input" if shared == len(target)
                else f"{shared} of the {len(target)} target inputs are also source inputs")
        warnings.append(f"{held}: there is little or no shift to adapt to; "
                        f"{option('target')} should be the new domain's unlabelled data")
    if target.labels is not None:
        warnings.append(f"{target.name or 'the target'} has labels; they are ignored (unsupervised adaptation)")
        target = target.without_labels()
    if target_test is not None:
        if target_test.labels is None:
            raise BadInput(f"{target_test.name or 'target test'}: {option('target_test')} needs labels")
        if target_test.modality != source.modality:
            raise BadInput(f"source is {source.modality} data but the target test is {target_test.modality}")
        _check_dims(source, target_test, "target test")
        unknown = sorted(set(target_test.classes) - set(source.classes))
        if unknown:
            raise BadInput(
                f"the target test has labels the source lacks ({', '.join(unknown[:5])}); "
                "source and target must share one label set"
            )
    return target, warnings


def source_inputs_in(target: Dataset, source: Dataset) -> int:
    """How many of the target's inputs are also source inputs (as cross-validation matches copies)."""
    from quickadapt.data.dataset import example_key

    keys = {example_key(x, source.modality) for x in source.inputs}
    return sum(example_key(x, target.modality) in keys for x in target.inputs)


def _check_dims(source: Dataset, other: Dataset, what: str) -> None:
    if source.modality != "features":
        return
    ds, do = np.asarray(source.inputs).shape[1], np.asarray(other.inputs).shape[1]
    if ds != do:
        raise BadInput(f"source has {ds} features per example but the {what} has {do}; they must match")


@random_state_kept()  # it seeds the global generators: the caller's are put back
@usual_torch_modes()  # it trains, whatever the calling thread switched off
@each_note_once()
def adapt_domain(
    source: Dataset | str | os.PathLike,
    target: Dataset | str | os.PathLike,
    method: str = "auto",  # as domain-adapt: the candidates or source-only, whichever the validator trusts most
    params: dict | None = None,
    encoder: str | None = None,
    seed: int = 0,
    device: str = "auto",
    *,
    encoder_params: dict | None = None,
    target_test: Dataset | str | os.PathLike | None = None,
    val_fraction: float = 0.2,
    criterion: str = "dev",
    compare: bool = True,
    candidates: tuple[str, ...] = AUTO_CANDIDATES,
    refit: bool = True,
    progress: bool = True,
) -> AdaptedModel:
    """Adapt a classifier trained on labelled `source` to the unlabelled `target`.

    Each data argument is a `Dataset` or what `load_dataset` reads (a path, `builtin:NAME`); a
    target read from a path may have labels (they are ignored, with a warning).

    `params` are method settings; with `method="auto"` (and for the source-only comparison) each
    method takes the ones it knows. The result's `info` holds, per fitted method, the
    validator's scores (and the target test accuracy when `target_test` is given: evaluation
    only), `negative_transfer` (adaptation looks worse than source-only to the validator, or its
    target predictions collapsed), the chosen `domain_method` and `warnings` (also logged as they
    arise when `progress`), among them one when the kept model answers most target inputs with
    few classes (`FEW_CLASSES_FRACTION`), whichever method it is. With `target_test`,
    `target_test_vs_source_only` compares the chosen method with source-only on it (McNemar),
    and a measurably worse one is a warning: evaluation only, it chooses nothing.

    With `refit` (the default) the returned model is the chosen method fitted again, with the
    same settings and seed, on the whole source; the scores above describe its held-out-source
    twin. A method that early-stops on the validator (`checkpoints` > 0) is not refitted: that
    needs the held-out source. `info["target_test_accuracy"]` is the returned model's."""
    from quickadapt.domain import create_method, list_methods
    from quickadapt.domain.base import DomainContext
    from quickadapt.domain.validate import Validator, split_source

    if not 0 < val_fraction < 1:
        raise BadInput(f"val_fraction must be in (0, 1), got {val_fraction}")
    if method != "auto" and method not in list_methods():  # before any data is read, "auto" among the choices
        close = close_names(method, ["auto", *list_methods()])
        raise BadInput(f"unknown domain adaptation method {method!r}: choose auto or one of {', '.join(list_methods())}"
                       + (f"; did you mean {', '.join(close)}?" if close else ""))
    seed_everything(seed)  # refuses a seed that is not a whole number >= 0, before the source is split with it
    if isinstance(candidates, str) or not all(isinstance(c, str) for c in candidates):
        raise BadInput(f"candidates must be a list of method names, e.g. ['mcc', 'dann'], got {candidates!r}")
    source, target, target_test, load_warnings = _as_datasets(source, target, target_test)
    target = match_columns(target, source.columns, "the source")
    target_test = None if target_test is None else match_columns(target_test, source.columns, "the source")
    target, warnings = check_inputs(source, target, target_test)
    warnings = load_warnings + warnings
    if progress:
        note_row_numbers(source)
        note_bookkeeping(source)
    for w in warnings if progress else ():
        log(f"warning: {w}")
    names = ["source-only", *candidates] if method == "auto" else [method]
    if method not in ("auto", "source-only") and compare:
        names.append("source-only")
    settings_for = _split_params(names, dict(params or {}), strict=None if method == "auto" else method)
    dev = pick_device(device)
    encoder = encoder or DEFAULT_ENCODER[source.modality]

    train_src, val_src = split_source(source, val_fraction, seed)
    validator = Validator(val_src, target, criterion=criterion, seed=seed)
    seed_everything(seed)
    # read once (file headers): conv4's input and predict's note on colour depend on it
    grey = None
    if source.modality == "image":
        from quickadapt.data.images import all_grey

        grey = all_grey(source.inputs) and all_grey(target.inputs)
    base = build_encoder(encoder, source, encoder_params, target, grey=grey)

    def fit(name: str, data: Dataset, score) -> AdaptedModel:
        seed_everything(seed)
        m = create_method(name, **settings_for[name])
        ctx = DomainContext(device=dev, seed=seed, progress=progress, score=score)
        return m.fit(copy.deepcopy(base), data, target, ctx)

    def test_right(model: AdaptedModel) -> np.ndarray:
        labels, _ = model.predict(target_test.inputs)
        return np.asarray(labels) == target_test.labels

    def test_accuracy(model: AdaptedModel) -> float:
        return float(np.mean(test_right(model)))

    models: dict[str, AdaptedModel] = {}
    report: dict[str, dict] = {}
    rights: dict[str, np.ndarray] = {}  # which target test rows each held-out fit gets right
    terms: dict[str, dict[str, np.ndarray]] = {}  # each held-out source example's share of the criterion
    for name in names:
        started = time.perf_counter()
        model = fit(name, train_src, validator)
        scores, terms[name] = validator.scores_and_terms(model)
        entry = {"seconds": round(time.perf_counter() - started, 3), **scores}
        entry["criterion"] = validator.criterion_value(entry, criterion)
        if target_test is not None:
            rights[name] = test_right(model)
            entry["target_test_accuracy"] = float(np.mean(rights[name]))
        models[name], report[name] = model, entry

    if "source-only" in report:
        floor = COLLAPSE_RATIO * report["source-only"]["target_class_entropy"]
        for name, entry in report.items():
            entry["collapsed"] = name != "source-only" and entry["target_class_entropy"] < floor
    usable = [n for n in names if not report[n].get("collapsed")]
    chosen = min(usable, key=lambda n: report[n]["criterion"]) if method == "auto" else method
    early_stopped = getattr(create_method(chosen, **settings_for[chosen]).cfg, "checkpoints", 0) > 0
    refitted = refit and not early_stopped
    if refitted:
        if progress:
            log(f"refitting {chosen} on all {len(source)} source examples")
        models[chosen] = fit(chosen, source, None)
    info = {
        "domain_method": chosen,
        "requested_method": method,
        "criterion": criterion,
        "refit": refitted,
        "n_source_fit": len(source) if refitted else len(train_src),
        "n_source_train": len(train_src),
        "n_source_val": len(val_src),
        "n_target": len(target),
        "data_fingerprint": source.fingerprint(),  # the labelled data it was adapted on, as fit records it
        "target_fingerprint": target.fingerprint(),
        "environment": run_environment(dev),  # as fit records it: threads, device and versions
        "feature_columns": source.columns,  # what predict must be given, by name (data/columns.py)
        "methods": report,
    }
    if grey is not None:  # predict notes colour inputs that a model fit on grey never saw
        info["inputs_grey"] = grey
    adapted = [n for n in names if n != "source-only"]
    if "source-only" in report and adapted:
        best = chosen if chosen != "source-only" else min(adapted, key=lambda n: report[n]["criterion"])
        collapsed = report[best]["collapsed"]
        info["negative_transfer"] = bool(collapsed or report[best]["criterion"] > report["source-only"]["criterion"])
        if criterion in terms[best]:  # dev, iwv: a mean over the same held-out source examples, so pairable
            # dev's noise from its jackknife pseudo-values: its terms share an eta fitted to the same examples
            noise = f"{criterion}_jackknife"
            info["criterion_lead_se"] = paired_lead_se(
                terms["source-only"][criterion], terms[best][criterion],
                noise=(terms["source-only"][noise], terms[best][noise]) if noise in terms[best] else None)
        if info["negative_transfer"]:
            why = "its target predictions collapse onto few classes" if collapsed else f"by the {criterion} validator"
            what = "fell back to source-only" if chosen == "source-only" else f"consider {option('method')} auto or source-only"
            warnings.append(f"{best} looks worse than source-only ({why}); {what}")
            if progress:
                log(f"warning: {warnings[-1]}")
    if target_test is not None and "source-only" in rights and chosen != "source-only":
        # the label-free verdict above can be wrong (DEV prefers confident models): the labelled
        # target test says what happened, comparing the two fits on the same held-out split
        info["target_test_vs_source_only"] = versus = target_test_comparison(rights[chosen], rights["source-only"])
        if versus["verdict"] == "worse":
            warnings.append(f"on the target test {chosen} is WORSE than source-only ({versus['accuracy']:.1%} against "
                            f"{versus['source_only_accuracy']:.1%}, McNemar p = {versus['p_worse']:.3f}): adaptation "
                            f"hurt (negative transfer); {option('method')} source-only keeps the baseline")
            if progress:
                log(f"warning: {warnings[-1]}")
    model = models[chosen]
    few = few_classes_warning(chosen, answers_entropy(model, validator.target), len(source.classes),
                              len(validator.target), source.modality)
    if few:  # the guard above compares methods; this looks at the model kept, whichever it is
        warnings.append(few)
        if progress:
            log(f"warning: {few}")
    info["warnings"] = warnings
    if target_test is not None:
        info["target_test_accuracy"] = test_accuracy(model) if refitted else report[chosen]["target_test_accuracy"]
    model.info.update(info)
    model.strategy_params = {**model.strategy_params, "encoder": encoder}
    return model


def target_test_comparison(right: np.ndarray, source_only_right: np.ndarray) -> dict:
    """The adapted method against source-only on the labelled target test (which rows each gets
    right): both accuracies, the rows only one gets right, McNemar's one-sided p-values and the
    verdict: better, worse, or within the noise of the test's rows."""
    from quickadapt.evaluate.cv import SIGNIFICANCE, mcnemar_p

    p_better, p_worse = mcnemar_p(right, source_only_right), mcnemar_p(source_only_right, right)
    verdict = "better" if p_better < SIGNIFICANCE else "worse" if p_worse < SIGNIFICANCE else "within noise"
    return {"accuracy": float(np.mean(right)), "source_only_accuracy": float(np.mean(source_only_right)),
            "n": len(right), "only_adapted_right": int(np.sum(right & ~source_only_right)),
            "only_source_only_right": int(np.sum(source_only_right & ~right)),
            "p_better": p_better, "p_worse": p_worse, "verdict": verdict}


def answers_entropy(model: AdaptedModel, target: Dataset) -> float:
    """Entropy (nats) of the shares of the classes the model answers on the target inputs."""
    answers = np.asarray(model.predict_proba(target.inputs)).argmax(1)
    shares = np.bincount(answers) / len(answers)
    shares = shares[shares > 0]
    return max(0.0, float(-(shares * np.log(shares)).sum()))  # one class: 0, not -0


# what "a source closer to the target" means for each kind of input: a text user was told of colours
CLOSER_SOURCE = {"image": "the same colours, contrast, scale", "text": "the same language, wording, spelling, length",
                 "features": "the same measurements, units, scales"}


def few_classes_warning(method: str, spread: float, n_classes: int, n_answers: int | None = None,
                        modality: str = "image") -> str | None:
    """The warning for a kept model whose target answers fall on few of the `n_classes`
    (`spread`: entropy of the answers' class shares, in nats), or None. `n_answers` target
    inputs can name at most that many classes: 3 answers spread over 1.10 nats at most, under
    half of log 15, so a 3-row target was said to be too far from a 15-class source."""
    classes = min(n_classes, n_answers) if n_answers else n_classes
    full = float(np.log(classes)) if classes > 1 else 0.0
    if spread >= FEW_CLASSES_FRACTION * full:
        return None
    alike = f"all {n_classes} classes alike" if classes == n_classes else f"{classes} answers in {classes} classes"
    return (f"the kept model ({method}) answers most target inputs with few classes (its answers spread over "
            f"{spread:.2f} nats, against {full:.2f} for {alike}): unless the target truly holds "
            "mostly those classes, the domains look too far apart for a reliable model; try a source closer to the "
            f"target ({CLOSER_SOURCE[modality]}), or label some target examples and train on them (quickadapt fit)")


def _as_datasets(source, target, target_test):
    """The three data arguments as Datasets, loading paths as the command line does; the
    warnings that loading the target gave."""
    from quickadapt.data import as_dataset

    target, warnings = _target_dataset(target)
    return as_dataset(source), target, as_dataset(target_test), warnings


def _target_dataset(target) -> tuple[Dataset, list[str]]:
    """The target, whose labels are ignored: a file with some labels missing is read without
    them, with a warning, not refused for a blank label it never needed."""
    from quickadapt.data import as_dataset

    try:
        return as_dataset(target, labels="optional"), []
    except MissingLabel:
        unlabelled = as_dataset(target, labels="ignore")
        return unlabelled, [f"{unlabelled.name or 'the target'} has labels, some missing; they are ignored "
                            "(unsupervised adaptation)"]


def build_encoder(encoder: str, source: Dataset, encoder_params: dict | None = None, target: Dataset | None = None,
                  grey: bool | None = None):
    """The encoder every method starts from (`mlp` for feature vectors gets the domain defaults).

    As `adapt_domain` calls it: conv4 reads colour unless `grey` (every source and target image
    is grey; its own grey default serves Omniglot, and red and green shapes of one grey level
    were at chance), and with the `target` mlp takes its input statistics (centring, and on
    mixed scales each feature's spread) from source and target together: by the source alone, a
    column that barely varies there (a digit's border pixel) blew any target offset or noise up
    5 to 25 times (source-only 94 -> 47 %)."""
    from quickadapt.artifact import resolve_encoder

    settings = dict(encoder_params or {})
    if encoder == "mlp" and source.modality == "features":
        settings.setdefault("in_dim", int(np.asarray(source.inputs).shape[1]))
        settings = {**DOMAIN_MLP, **settings}
    if encoder == "conv4" and grey is not None:
        settings.setdefault("grey", grey)
    base = resolve_encoder(encoder, **settings)
    if base.modality != source.modality:
        raise BadInput(f"encoder {encoder!r} reads {base.modality} but the data is {source.modality}")
    if base.fits_inputs:  # once, for every method alike
        both = [source] if target is None else [source, target]
        base.fit_inputs(np.concatenate([np.asarray(d.inputs) for d in both]))
    return base


def _split_params(names: list[str], params: dict, strict: str | None) -> dict[str, dict]:
    """Each method's share of `params`. The `strict` method (a named one) must accept all of
    them (BadInput otherwise); without one, each setting must fit at least one method."""
    from dataclasses import fields

    from quickadapt.domain import DOMAIN_METHODS, create_method

    out = {}
    for name in names:
        known = {f.name for f in fields(DOMAIN_METHODS.get(name).Config)}
        out[name] = params if name == strict else {k: v for k, v in params.items() if k in known}
        create_method(name, **out[name])  # bad values fail here, before any work
    used = set().union(*(out[n] for n in names)) if names else set()
    unused = sorted(set(params) - used)
    if unused:
        raise BadInput(f"unknown setting {unused[0]!r}: none of {', '.join(names)} takes it")
    return out


__all__ = ["adapt_domain", "build_encoder", "check_inputs", "DEFAULT_ENCODER", "AUTO_CANDIDATES"]
