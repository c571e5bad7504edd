"""`quickadapt report`: one self-contained HTML page about a model folder, and its plots as PNG
files beside it, for deciding whether the model can be used.

The page reads the manifest (what the model is, what its fit measured, the verdicts the command
line printed) and, given labelled test data, scores the model as `quickadapt evaluate` does
(evaluate/scoring.py): nothing is measured a second way. The plots are embedded as data: URIs,
so the page alone opens offline, anywhere; every name that came from the user (labels, texts,
paths, settings) is HTML-escaped. The folder is written beside `out` and renamed into place."""
from __future__ import annotations

import base64
import datetime
import html
import json
from pathlib import Path

from quickadapt.errors import BadInput, option
from quickadapt.output import as_path, check_output, finite_json

INDEX = "index.html"
# the report's figures as --json prints them; also what marks the folder as a report, so that
# --force may replace it (quickadapt/output.py refuses to replace a folder of other files)
SUMMARY = "quickadapt-report.json"
SHOWN_CONFUSIONS = 10  # the most confused pairs listed on the page
SHOWN_CLASS_NAMES = 40  # a longer class list is folded away


def write_report(model, out, *, data: str | None = None, task: str = "main", abstain: bool = False,
                 threshold: float | None = None, oos_label: str | None = None, none_label: str = "__none__",
                 force: bool = False, device: str = "cpu", progress: bool = False) -> dict:
    """Write the report on the model folder `model` to the folder `out` (`index.html` and one PNG
    per plot); with `data`, labelled test data (a path or `builtin:NAME`), scored as `quickadapt
    evaluate` scores it (`abstain`, `threshold`, `oos_label`, `none_label`, `task` as there). An existing `out`
    is replaced only with `force`. Returns what was written and the headline figures."""
    from quickadapt.artifact import read_manifest, read_whole, write_folder_atomically

    model_dir = as_path(model, "the model folder").expanduser()
    out = check_output(out, force, inputs=(model, data))  # before any work
    manifest = read_whole(model_dir, lambda: read_manifest(model_dir))
    sections, plots = _model_sections(manifest, model_dir)
    result: dict = {"kind": manifest.get("kind"), **_fit_headline(manifest)}
    if data is not None:
        test_sections, test_plots, figures = _test_sections(manifest, model_dir, data, task=task, abstain=abstain,
                                                            threshold=threshold,
                                                            oos_label=oos_label, none_label=none_label,
                                                            device=device, progress=progress)
        sections += test_sections
        plots.update(test_plots)
        result["test"] = figures
    page = _page(model_dir, data, sections)
    result = {"out": str(out), "index": str(out / INDEX), "plots": [str(out / name) for name in plots], **result}
    files = {INDEX: lambda p: p.write_text(page, encoding="utf-8"),
             SUMMARY: lambda p: p.write_text(json.dumps(finite_json(result), indent=2) + "\n", encoding="utf-8")}
    files.update({name: (lambda png: lambda p: p.write_bytes(png))(png) for name, png in plots.items()})
    write_folder_atomically(out, files, replace=force)
    return result


def e(value) -> str:
    """Any value as HTML text: escaped, quotes included (it may land in an attribute)."""
    return html.escape(str(value), quote=True)


def _pct(value) -> str:
    return "–" if value is None else f"{value:.1%}"


def _table(rows, header=None) -> str:
    head = "<tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>" if header else ""
    body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table>{head}{body}</table>"


def _facts(pairs) -> str:
    """A two-column table of (what, value) pairs; values None are left out."""
    return "<table class='facts'>" + "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>"
                                              for k, v in pairs if v is not None) + "</table>"


def _lines(text: str, css: str = "verdict") -> str:
    return f"<ul class='{css}'>" + "".join(f"<li>{e(line.strip())}</li>" for line in text.splitlines()
                                           if line.strip()) + "</ul>"


def _settings(params) -> str | None:
    if not params:
        return None
    return ", ".join(f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in params.items())


def _fit_headline(manifest: dict) -> dict:
    metrics = manifest.get("metrics") or {}
    out = {k: metrics[k] for k in ("cv_accuracy", "negative_transfer") if k in metrics}
    if isinstance(metrics.get("baseline"), dict) and "cv_accuracy" in metrics["baseline"]:
        out["baseline_cv_accuracy"] = metrics["baseline"]["cv_accuracy"]
    if manifest.get("kind") != "encoder":
        out["threshold"] = manifest.get("threshold")
    if isinstance(metrics.get("domain"), dict):
        out.update({"domain_method": metrics["domain"].get("method"),
                    "negative_transfer": metrics["domain"].get("negative_transfer")})
    if isinstance(manifest.get("meta"), dict):
        validation = (manifest["meta"].get("train") or {}).get("validation") or {}
        out.update({"meta_method": manifest["meta"].get("method"),
                    "validation_accuracy": validation.get("best_accuracy")})
    return out


def _model_sections(manifest: dict, model_dir: Path) -> tuple[list[str], dict]:
    """What the model is, what its fit measured, and the extras of its kind."""
    encoder = manifest.get("encoder") or {}
    strategy = manifest.get("strategy") or {}
    info = manifest.get("info") or {}
    env = info.get("environment") or (manifest.get("meta") or {}).get("environment") or {}
    tasks = manifest.get("tasks") or {}
    what = _facts([
        ("kind", manifest.get("kind")),
        ("encoder", f"{encoder.get('name')} ({encoder.get('modality')}, {encoder.get('embed_dim')} features, "
                    f"weights {encoder.get('weights')})"),
        ("encoder settings", _settings(encoder.get("settings"))),
        ("strategy", strategy.get("name")),
        ("strategy settings", _settings(strategy.get("params"))),
        ("started from", info.get("encoder_folder")),
        ("classes", ", ".join(f"{t}: {len(v.get('classes', []))}" for t, v in tasks.items()) or None),
        ("abstain threshold", _threshold_fact(manifest)),
        ("data fingerprint", manifest.get("data_fingerprint")),
        ("source fingerprint", info.get("source_fingerprint")),
        ("target fingerprint", info.get("target_fingerprint")),
        ("quickadapt version", manifest.get("quickadapt_version")),
        ("seed", manifest.get("seed")),
        ("created", manifest.get("created")),
        ("environment", ", ".join(f"{k} {v}" for k, v in env.items()) or None),
    ])
    sections = [f"<h2>The model</h2>{what}"]
    for name, t in tasks.items():
        classes = t.get("classes") or []
        if classes:
            listing = e(", ".join(map(str, classes)))
            shown = (f"<p>{listing}</p>" if len(classes) <= SHOWN_CLASS_NAMES
                     else f"<details><summary>{len(classes)} classes</summary><p>{listing}</p></details>")
            sections.append(f"<h3>Classes of task {e(name)} ({len(classes)}, head "
                            f"{e((t.get('head') or {}).get('kind', 'blend'))})</h3>{shown}")
    sections += _fit_section(manifest, model_dir)
    plots: dict = {}
    if isinstance(manifest.get("meta"), dict):
        meta_html, meta_plots = _meta_section(manifest["meta"])
        sections.append(meta_html)
        plots.update(meta_plots)
    return sections, plots


def _threshold_fact(manifest: dict) -> str | None:
    if manifest.get("kind") == "encoder":
        return None
    if manifest.get("threshold") is None:
        return "none calibrated"
    return f"{manifest['threshold']:.4f} (top probability below it: abstain, with {option('abstain')})"


def _fit_section(manifest: dict, model_dir: Path) -> list[str]:
    """The cross-validated estimate beside the baseline, and the verdicts the command line
    printed (evaluate/summary.py, the very text)."""
    from quickadapt.evaluate.cv import SIGNIFICANCE
    from quickadapt.evaluate.summary import fit_summary

    metrics = manifest.get("metrics") or {}
    info = manifest.get("info") or {}
    if isinstance(metrics.get("domain"), dict):
        return [_domain_section(metrics["domain"], model_dir)]
    if not metrics:
        return []
    r = {**metrics, "out": str(model_dir), "encoder": (manifest.get("encoder") or {}).get("name"),
         "strategy": (manifest.get("strategy") or {}).get("name"),
         "encoder_pretrained": info.get("encoder_pretrained", True)}  # its disagreements: a table below
    base = metrics.get("baseline") if isinstance(metrics.get("baseline"), dict) else {}
    if metrics.get("cv_accuracy") is None:
        # fit --cv 0, or too few examples: a row "–, 0 folds, – examples scored" read as a measurement
        rows = [("cross-validated accuracy", "none",
                 metrics.get("cv_note") or "the fit ran no cross-validation (--cv 0)")]
    else:
        rows = [("cross-validated accuracy", _pct(metrics["cv_accuracy"]), f"{metrics.get('cv_folds', metrics.get('cv'))} "
                 f"folds, {metrics.get('cv_scored', '–')} examples scored")]
    if "cv_balanced_accuracy" in metrics:
        rows.append(("balanced accuracy", _pct(metrics["cv_balanced_accuracy"]), "mean recall of the classes scored"))
    if base:
        rows.append((f"baseline: {base.get('name')} (no transfer)", _pct(base.get("cv_accuracy")), "same folds"))
    if metrics.get("p_transfer_better") is not None:
        p = metrics["p_transfer_better"]
        # the verdict fit printed, by its rule: a note "small: a real lead" beside p = 0.5 read as one
        rows.append(("McNemar p, transfer no better", f"{p:.3g}",
                     f"below {SIGNIFICANCE:g}: a real lead" if p < SIGNIFICANCE
                     else f"{SIGNIFICANCE:g} or above: the lead is within the noise"))
    return ["<h2>What the fit measured</h2>" + _table(rows, ("figure", "value", "on")) + _lines(fit_summary(r))
            + _disagreements_table(info.get("cv_disagreements") or [])]


def _disagreements_table(found: list[dict]) -> str:
    """The training examples cross-validation put in another class, the most confident first: the
    likeliest to be mislabelled (the manifest keeps their rows, not their inputs)."""
    if not found:
        return ""
    rows = [(d.get("row"), d.get("label"), d.get("predicted"), f"{d.get('score', 0):.2f}") for d in found]
    return (f"<details><summary>{len(found)} training examples predicted as another class out of fold (mislabelled, "
            "or hard; the most confident first)</summary>"
            + _table(rows, ("row of the training data (from 1)", "label", "predicted", "score")) + "</details>")


def _domain_section(d: dict, model_dir: Path) -> str:
    """Source-only against the adapted candidates under the label-free criterion, and the verdict."""
    from quickadapt.evaluate.summary import domain_summary

    rows = []
    for name, m in (d.get("methods") or {}).items():
        rows.append(("*" if name == d.get("method") else "", name, f"{m.get('criterion', float('nan')):.3f}",
                     _pct(m.get("source_val_accuracy")), _pct(m.get("target_test_accuracy")),
                     "collapsed" if m.get("collapsed") else ""))
    header = ("kept", "method", f"{d.get('criterion')} risk (lower is better)", "held-out source accuracy",
              "target-test accuracy (evaluation only)", "")
    # the command line's summary less its per-method lines, which the table holds
    said = domain_summary({**d, "out": str(model_dir)}).splitlines()
    said = said[:1] + said[2 + len(d.get("methods") or {}):]
    return ("<h2>Domain adaptation: source-only against adapted, label-free</h2>" + _table(rows, header)
            + _lines("\n".join(said)))


def _meta_section(meta: dict) -> tuple[str, dict]:
    """A meta-trained encoder: the method, its episodes, the class split and validation."""
    from quickadapt.evaluate.plots import validation_curve_png

    split = meta.get("class_split") or {}
    train = meta.get("train") or {}
    val = train.get("validation") or {}
    start = meta.get("start") or {}
    groups = split.get("groups") or {}
    facts = _facts([
        ("method", meta.get("method")),
        ("episodes", f"{meta.get('n_way')}-way {meta.get('k_shot')}-shot, {meta.get('n_query')} queries a class, "
                     f"{meta.get('meta_batch')} episodes a step"),
        ("data", meta.get("data")),
        ("started from", f"{start.get('encoder')} ({start.get('weights')})" if start else None),
        ("pretraining", _settings(start.get("pretrain")) if start.get("pretrain") else None),
        ("training", f"{train.get('steps')} steps, {train.get('seconds')} s, stopped by {train.get('stopped')}, "
                     f"running query accuracy {_pct(train.get('running_accuracy'))}" if train else None),
        ("validation", f"kept step {val['best_step']}: accuracy {_pct(val.get('best_accuracy'))} on "
                       f"{val.get('episodes')} {val.get('n_way')}-way episodes" if "best_step" in val else None),
    ])
    split_rows = [(part, len(split.get(part) or []), ", ".join(groups.get(part) or []) or "–")
                  for part in ("train", "val", "test")]
    html_ = (f"<h2>Meta-training</h2>{facts}<h3>Class split (by {e(split.get('by', '–'))})</h3>"
             + _table(split_rows, ("part", "classes", "groups"))
             + "<p>quickadapt episodes tests on the test classes, which training never saw.</p>")
    plots = {}
    curve = val.get("curve") or []
    if len(curve) > 1:
        plots["validation.png"] = validation_curve_png(curve, val.get("best_step"))
        html_ += _figure("validation.png", plots["validation.png"], "Validation accuracy by step")
    return html_, plots


def _figure(name: str, png: bytes, caption: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (f"<figure><img alt='{e(caption)}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{e(caption)} (<a href='{e(name)}'>{e(name)}</a>)</figcaption></figure>")


def _test_sections(manifest: dict, model_dir: Path, data: str, *, task, abstain, threshold, oos_label, none_label,
                   device, progress) -> tuple[list[str], dict, dict]:
    """The model scored on `data` as evaluate scores it, with the per-class table and the plots."""
    import numpy as np

    from quickadapt.artifact import load_model
    from quickadapt.data import load_dataset
    from quickadapt.data.loaders import label_text
    from quickadapt.evaluate.plots import MOST_SHOWN, confidence_png, confusion_matrix_png, shown_classes
    from quickadapt.evaluate.scoring import score_test_data
    from quickadapt.train import pick_device

    if manifest.get("kind") == "encoder":
        raise BadInput(f"{model_dir} is an encoder folder, with no classes to score {data} on; fit a model on it "
                       f"(--encoder {model_dir}), or measure it with quickadapt episodes")
    if oos_label is not None:
        oos_label = label_text(oos_label)  # as the test file's labels are read: -1.0 is -1
    read = load_dataset(data)
    model = load_model(model_dir, device=pick_device(device), for_cache=True)
    scored = score_test_data(model, model_dir, read, data, task=task, abstain=abstain, threshold=threshold,
                             none_label=none_label, oos_label=oos_label, progress="reporting" if progress else None)
    r = scored.report
    abstain = abstain or threshold is not None  # as evaluate: a threshold given abstains below it
    if threshold is None and task == "main":  # the calibrated one, the main head's, marked on the histogram
        threshold = model.threshold
    truth = np.asarray(scored.test.labels, dtype=object)
    answers = np.asarray(scored.labels, dtype=object)
    oos = truth == oos_label if oos_label is not None else np.zeros(len(truth), dtype=bool)
    # the warnings too: the page shows them, and a script reading --json (or the terminal's line)
    # took 100 % on the training examples for a test result without them
    figures = {k: r[k] for k in ("accuracy", "accuracy_ci95", "macro_f1", "n", "n_abstained", "oos_recall",
                                 "oos_recall_ci95", "n_oos", "warnings") if k in r}
    low, high = r.get("accuracy_ci95") or (None, None)
    rows = [("accuracy", _pct(r["accuracy"]), f"95% CI {_pct(low)} to {_pct(high)}" if low is not None else ""),
            ("macro F1", _pct(r["macro_f1"]), ""), ("in-scope rows", r["n"], "")]
    if abstain:
        rows.append(("abstained (counted wrong)", r.get("n_abstained", 0),
                     f"top probability below {threshold:.4f}"))
    if r.get("oos_recall") is not None:
        low, high = r["oos_recall_ci95"]
        rows.append(("out-of-scope recall", _pct(r["oos_recall"]), f"95% CI {_pct(low)} to {_pct(high)}; "
                     f"{r['n_oos']} rows labelled {oos_label}"
                     + ("" if abstain else f"; without {option('abstain')} every input gets a class")))
    which = f" (task {e(task)})" if len(model.classes) > 1 else ""
    head = (f"<h2>On the test data {e(data)}{which}</h2>"
            + "".join(f"<p class='warning'>warning: {e(w)}</p>" for w in r["warnings"])
            + _table(rows, ("figure", "value", "")))
    sections = [head]
    plots: dict = {}
    classes = list(model.classes[task])
    shown = shown_classes(classes, r["confusions"])
    subset = len(shown) < len(classes)
    note = f"the {len(shown)} classes most mixed up, of {len(classes)}" if subset else ""
    if shown:  # over in-scope rows, as evaluate's confusions
        plots["confusion.png"] = confusion_matrix_png(truth[~oos], answers[~oos], shown, note=note, others=subset,
                                                      abstained=none_label if abstain else None)
    # the top class, abstained on or not: what the threshold withholds, right answers and wrong
    right = np.asarray(scored.top_labels[:, 0], dtype=object) == truth
    plots["confidence.png"] = confidence_png(scored.scores, right, threshold=threshold,
                                             out_of_scope=oos if oos.any() else None)
    pairs = [(c["label"], c["predicted"], c["count"]) for c in r["confusions"][:SHOWN_CONFUSIONS]]
    confused = (f"<h3>Most confused pairs ({len(r['confusions'])} in all)</h3>" + _table(pairs, ("test label", "answered", "rows"))
                if pairs else "<h3>Most confused pairs</h3><p>None: every answered in-scope row was right.</p>")
    sections.append(confused)
    if "confusion.png" in plots:
        sections.append(_figure("confusion.png", plots["confusion.png"],
                                "Confusion matrix" + (f": {note}" if note else "") + "; colour: share of the row"))
    sections.append(_figure("confidence.png", plots["confidence.png"],
                            "Top probability of each test row, its top class right or wrong (abstained on or not)"
                            + ("; dashed: the abstain threshold" if threshold is not None
                               else "; no threshold to mark: none calibrated for this task")))
    sections.append(_per_class_section(r["per_class"]))
    return sections, plots, figures


def _per_class_section(per_class: dict) -> str:
    """Every class's precision, recall, F1 and support, the lowest F1 first: those to look at."""
    oos = any("oos_answered" in m for m in per_class.values())
    order = sorted(per_class.items(), key=lambda kv: (kv[1]["f1"] is None, kv[1]["f1"] or 0, str(kv[0])))
    rows = [(lab, _pct(m["precision"]), _pct(m["recall"]), _pct(m["f1"]), m["support"],
             *((m.get("oos_answered", 0),) if oos else ())) for lab, m in order]
    header = ("class", "precision", "recall", "F1", "support", *(("out-of-scope rows answered",) if oos else ()))
    return "<h3>Per class (the lowest F1 first)</h3>" + _table(rows, header)


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:70em;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.5em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left;
vertical-align:top}th{background:#f4f4f4}table.facts th{width:12em}td{word-break:break-word}
ul.verdict{background:#f7f7f2;border-left:4px solid #b8a;padding:.6em 1.6em}.warning{color:#a00;font-weight:600}
figure{margin:1em 0}img{max-width:100%;border:1px solid #eee}figcaption{font-size:.9em;color:#555}
"""


def _page(model_dir: Path, data: str | None, sections: list[str]) -> str:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    from quickadapt import __version__

    intro = (f"<p>Written {e(now)} by quickadapt {e(__version__)} from the model folder <code>{e(model_dir)}</code>"
             + (f" and the test data <code>{e(data)}</code>" if data else
                " (no test data: with --data TEST the page adds the test figures, per-class scores and plots)")
             + ".</p>")
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>quickadapt report: {e(model_dir.name)}</title><style>{CSS}</style></head><body>"
            f"<h1>quickadapt report: {e(model_dir.name)}</h1>{intro}" + "\n".join(sections) + "</body></html>\n")
