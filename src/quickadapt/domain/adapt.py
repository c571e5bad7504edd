"""`adapt_domain()`: the one-call entry point behind `quickadapt domain-adapt`.

Checks the inputs, holds out part of the labelled source for label-free validation, fits the
method and, beside it, the source-only baseline with the same encoder initialisation, batches and
steps; scores both with the validator (the negative-transfer guard) and, only when labelled
target test data is given, measures their real target accuracy (the oracle, for evaluation
only: it never chooses anything). `method="auto"` fits each candidate and keeps the one the
validator prefers, source-only included, so it falls back to source-only when adaptation
looks worse."""
from __future__ import annotations

import copy
import time

import numpy as np

from quickadapt.data.dataset import Dataset
from quickadapt.errors import BadInput
from quickadapt.model import MAIN_TASK, AdaptedModel
from quickadapt.progress import log
from quickadapt.train import pick_device, seed_everything

DEFAULT_ENCODER = {"features": "mlp", "text": "minilm", "image": "conv4"}
AUTO_CANDIDATES = ("mcc", "dann", "mmd")  # tried by method="auto", besides source-only


def check_inputs(source: Dataset, target: Dataset, target_test: Dataset | None = None) -> tuple[Dataset, list[str]]:
    """Validate the pairing; return the target without labels and the warnings to show."""
    source.require_labels()
    if len(target) == 0:
        raise BadInput(f"{target.name or 'target'}: the target has no examples")
    if source.modality != target.modality:
        raise BadInput(f"source is {source.modality} data but the target is {target.modality}")
    _check_dims(source, target, "target")
    warnings = []
    if target.labels is not None:
        warnings.append(f"{target.name or 'the target'} has labels; they are ignored (unsupervised adaptation)")
        target = target.without_labels()
    if target_test is not None:
        if target_test.labels is None:
            raise BadInput(f"{target_test.name or 'target test'}: --target-test needs labels")
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


def _check_dims(source: Dataset, other: Dataset, what: str) -> None:
    if source.modality != "features":
        return
    ds, do = np.asarray(source.inputs).shape[1], np.asarray(other.inputs).shape[1]
    if ds != do:
        raise BadInput(f"source has {ds} features per example but the {what} has {do}; they must match")


def adapt_domain(
    source: Dataset,
    target: Dataset,
    method: str = "dann",
    params: dict | None = None,
    encoder: str | None = None,
    seed: int = 0,
    device: str = "auto",
    *,
    encoder_params: dict | None = None,
    target_test: Dataset | None = None,
    val_fraction: float = 0.2,
    criterion: str = "dev",
    compare: bool = True,
    candidates: tuple[str, ...] = AUTO_CANDIDATES,
    progress: bool = True,
) -> AdaptedModel:
    """Adapt a classifier trained on labelled `source` to the unlabelled `target`.

    `info` of the result holds `warnings` (shown as they arise when `progress`), per fitted method, the validator's scores (and the target test
    accuracy when `target_test` is given), `negative_transfer` (the adapted model looks worse than
    source-only to the validator) and, for auto, the `chosen` method."""
    from quickadapt.artifact import resolve_encoder
    from quickadapt.domain import create_method
    from quickadapt.domain.base import DomainContext
    from quickadapt.domain.validate import Validator, split_source

    if not 0 < val_fraction < 1:
        raise BadInput(f"val_fraction must be in (0, 1), got {val_fraction}")
    target, warnings = check_inputs(source, target, target_test)
    for w in warnings if progress else ():
        log(f"warning: {w}")
    params = dict(params or {})
    names = ["source-only", *candidates] if method == "auto" else [method]
    for name in names:
        create_method(name, **params)  # unknown names and bad settings fail before any work
    if method != "auto" and method != "source-only" and compare:
        names = [method, "source-only"]
    dev = pick_device(device)
    encoder = encoder or DEFAULT_ENCODER[source.modality]

    train_src, val_src = split_source(source, val_fraction, seed)
    validator = Validator(val_src, target, criterion=criterion, seed=seed)
    seed_everything(seed)
    settings = dict(encoder_params or {})
    if encoder == "mlp" and source.modality == "features":
        settings.setdefault("in_dim", int(np.asarray(source.inputs).shape[1]))
    base = resolve_encoder(encoder, **settings)
    if base.modality != source.modality:
        raise BadInput(f"encoder {encoder!r} reads {base.modality} but the data is {source.modality}")

    models: dict[str, AdaptedModel] = {}
    report: dict[str, dict] = {}
    for name in names:
        seed_everything(seed)
        m = create_method(name, **params)
        ctx = DomainContext(device=dev, seed=seed, progress=progress, score=validator)
        started = time.perf_counter()
        model = m.fit(copy.deepcopy(base), train_src, target, ctx)
        entry = {"seconds": round(time.perf_counter() - started, 3), **validator.scores(model)}
        entry["criterion"] = validator.criterion_value(entry, criterion)
        if target_test is not None:
            labels, _ = model.predict(target_test.inputs)
            entry["target_test_accuracy"] = float(np.mean(np.asarray(labels) == target_test.labels))
        models[name], report[name] = model, entry

    if method == "auto":
        chosen = min(names, key=lambda n: report[n]["criterion"])
    else:
        chosen = method
    model = models[chosen]
    info = {
        "domain_method": chosen,
        "requested_method": method,
        "criterion": criterion,
        "n_source_train": len(train_src),
        "n_source_val": len(val_src),
        "n_target": len(target),
        "methods": report,
    }
    adapted = [n for n in names if n != "source-only"]
    if "source-only" in report and adapted:
        best_adapted = chosen if chosen != "source-only" else min(adapted, key=lambda n: report[n]["criterion"])
        info["negative_transfer"] = bool(report[best_adapted]["criterion"] > report["source-only"]["criterion"])
        if info["negative_transfer"]:
            what = "fell back to source-only" if method == "auto" else "consider --method auto or source-only"
            warnings.append(f"{best_adapted} looks worse than source-only by the {criterion} validator; {what}")
            if progress:
                log(f"warning: {warnings[-1]}")
    info["warnings"] = warnings
    model.info.update(info)
    model.strategy_params = {**model.strategy_params, "encoder": encoder}
    return model


__all__ = ["adapt_domain", "check_inputs", "DEFAULT_ENCODER", "AUTO_CANDIDATES"]
