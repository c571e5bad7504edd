"""A loaded model scored on labelled test data: what `quickadapt evaluate` measures, and what
`quickadapt report --data` shows, computed once here for both."""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from quickadapt.errors import BadInput, option


@dataclass
class Scored:
    """`report`: classification_report's figures (with `top_k`, `top_k_accuracy` where asked, and
    `warnings`); `test`: the data as the model read it, labels in its class names; `labels`, the
    answers (the none-label where it abstained); `scores`, each row's top probability;
    `top_labels`, `top_scores`: each row's likeliest classes."""

    report: dict
    test: object
    labels: list
    scores: np.ndarray
    top_labels: np.ndarray
    top_scores: np.ndarray


def model_inputs(model, data, spec: str, model_dir):
    """`data` as `model` reads it: the same modality, feature columns in the training's order."""
    from quickadapt.data.columns import match_columns

    if data.modality != model.encoder.modality:
        raise BadInput(f"{spec} is {data.modality} data but the model {model_dir} reads {model.encoder.modality}")
    model.encoder.note_unread_inputs(data.inputs)
    note_colour_unseen(model, data)
    return match_columns(data, model.info.get("feature_columns"), f"the data {model_dir} was trained on", drop_extra=True)


def note_colour_unseen(model, data) -> None:
    """A model fit on grey images whose encoder reads colour meets colour it never saw: grey
    digits predicted well (83 %) fell to 28 % in blue ink, and read as grey again to 77 %."""
    from quickadapt.data.images import all_grey
    from quickadapt.progress import log

    if (data.modality == "image" and model.info.get("inputs_grey") and not model.encoder.settings.get("grey", False)
            and not all_grey(data.inputs)):
        # read from the files' headers: an RGB file of grey pixels (a grey scan saved as RGB) counts as colour
        log("note: the model was fit on grey images only and some of these are stored in colour (RGB): if they "
            "hold colour, it never saw any; if colour does not tell the classes apart, convert them to grey first")


def zeros_lost(unknown, classes) -> str:
    """What to add where the test labels the model never saw are its classes without their leading
    zeros (1 for its 01): a spreadsheet that read the column as numbers saved them so."""
    from quickadapt.data.dataset import zeros_dropped

    stripped = {zeros_dropped(c): c for c in classes if zeros_dropped(c) != c}
    meant = [f"{u} for {stripped[u]}" for u in unknown if u in stripped]
    if not meant:
        return ""
    return (f" ({', '.join(meant[:3])}: a spreadsheet that reads the column as numbers drops leading zeros; "
            "format it as text and save again)")


# repeated test rows, as a share of all, past which evaluate says that its interval counts them as new
REPEATS_SHOWN = 0.05


def repeated_rows(test) -> str | None:
    """A warning where more than REPEATS_SHOWN of the test rows repeat an earlier one (the same
    input with the same label): accuracy_ci95 counts each as a new draw, so where they are copies
    (a file appended twice, a template filled alike) and not real traffic that repeats, the
    interval is narrower than the evidence (20,000 rows of 2 distinct texts gave 100.0-100.0 %)."""
    from quickadapt.evaluate.cv import distinct_examples

    n = len(test)
    distinct = len(np.unique(distinct_examples(test))) if n else 0
    if n - distinct <= max(1, REPEATS_SHOWN * n):
        return None
    return (f"{n - distinct} of {n} test rows repeat an earlier one (same input, same label), {distinct} distinct: "
            "the accuracy and its 95 % interval count every row as a new case; if the repeats are copies, "
            "not queries that really recur, drop them and evaluate again")


# test rows of a class below which one row moves its recall by a quarter or more
FEW_TEST_ROWS = 5


def thin_classes(labels, classes) -> list[str]:
    """Warnings where some of the model's `classes` have no test rows among `labels` (the test's,
    out-of-scope ones included: they are no class), or fewer than FEW_TEST_ROWS: 6 rows of 3 of a
    10-class model's classes (CLINC150 banking) gave accuracy and macro F1 (over 4 classes) without
    a word that 7 classes were never tested, and a digit of one test row showed F1 25.0 % as the
    lowest, which that row alone decided."""
    from collections import Counter

    rows = Counter(labels)
    missing = [str(c) for c in classes if not rows[c]]
    few = [(str(c), rows[c]) for c in classes if 0 < rows[c] < FEW_TEST_ROWS]
    out = []
    if missing:
        out.append(f"{len(missing)} of the model's {len(classes)} classes {'has' if len(missing) == 1 else 'have'} "
                   f"no test rows ({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}): the figures say "
                   "nothing of how it recognises them; add test rows of every class")
    if few:
        out.append(f"{len(few)} of the model's classes {'has' if len(few) == 1 else 'have'} fewer than "
                   f"{FEW_TEST_ROWS} test rows ({', '.join(f'{c}: {n}' for c, n in few[:5])}"
                   f"{', ...' if len(few) > 5 else ''}): one row right or wrong moves such a class's recall by "
                   f"{1 / (FEW_TEST_ROWS - 1):.0%} or more, and the macro F1, which weighs every class alike, with it")
    return out


def score_test_data(model, model_dir, read, spec: str, *, task: str = "main", abstain: bool = False,
                    threshold: float | None = None, none_label: str = "__none__", oos_label: str | None = None,
                    top: int | None = None, progress: str | None = None) -> Scored:
    """Score `model` (loaded from `model_dir`) on the labelled dataset `read` (named `spec`):
    accuracy, macro F1, per-class figures and confusions over in-scope rows, abstaining below the
    threshold with `abstain` or `threshold`; `oos_label` marks out-of-scope rows (already read as
    the test file's labels are)."""
    from quickadapt.evaluate.metrics import classification_report, top_k_accuracy
    from quickadapt.model import class_index

    test = model_inputs(model, read, spec, model_dir)
    # feature columns in the model's order; hashed only at the fit's size (an image test set's
    # fingerprint reads every file again); in any order where the model kept that fingerprint too
    fitted_on_these = (model.info.get("n_examples", len(test)) == len(test)
                       and (test.fingerprint() == model.info.get("data_fingerprint")
                            or ("data_fingerprint_any_order" in model.info
                                and test.fingerprint_any_order() == model.info["data_fingerprint_any_order"])))
    model.check_task(task)
    if oos_label is not None and class_index(oos_label, model.classes[task]) is not None:
        raise BadInput(f"{option('oos_label')} {oos_label!r} is one of the model's classes, not an out-of-scope mark")
    test = replace(test, labels=model.as_classes(test.labels, task))  # 1 is the class a model stored as "1.0"
    unknown = sorted(set(test.classes) - set(model.classes[task]) - {oos_label})
    if unknown:
        hint = (f"more than the {option('oos_label')}" if oos_label is not None
                else f"pass {option('oos_label')} if they mark out-of-scope")
        raise BadInput(f"{spec} has labels the model never saw ({', '.join(unknown[:5])}); {hint}"
                       + zeros_lost(unknown, model.classes[task]))
    abstaining = abstain or threshold is not None
    labels, scores, top_labels, top_scores = model.predict_top(
        test.inputs, top or 1, task=task, abstain=abstaining, none_label=none_label, threshold=threshold,
        progress=progress,
    )
    # without abstaining every answer is a class: one named as --none-label is scored, not abstained
    report = classification_report(test.labels, labels, oos_label=oos_label,
                                   none_label=none_label if abstaining else None)
    if top is not None:
        report["top_k"] = top_labels.shape[1]
        report["top_k_accuracy"] = top_k_accuracy(test.labels, top_labels, oos_label=oos_label)
    report["warnings"] = []
    if repeats := repeated_rows(test):
        report["warnings"].append(repeats)
    report["warnings"] += thin_classes(test.labels, model.classes[task])
    if fitted_on_these:  # the very examples, and labels, it was fitted on
        report["warnings"].append("these are the examples the model was fitted on: the figures say how well it "
                                  "remembers them, not how it does on new data (fit reported a cross-validated "
                                  "estimate; evaluate on examples kept out of the fit)")
    return Scored(report, test, labels, scores, top_labels, top_scores)
