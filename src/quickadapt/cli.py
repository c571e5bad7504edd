"""The command line. Thin: parse arguments, call the library, print.

Results go to stdout (a human summary, or one JSON object with --json); progress and logs go to
stderr. Bad input exits with code 2 and one line on stderr (and {"error": ...} with --json)."""
from __future__ import annotations

import contextlib
import csv
import functools
import inspect
import json
import os
import re
import signal
import sys
import uuid
from pathlib import Path
from typing import List, Optional

import typer

from quickadapt.errors import BadInput, LostProcess, on_command_line, stop_signals_interrupt
from quickadapt.evaluate.summary import count, domain_summary, fit_summary, p_shown
from quickadapt.output import writes_alone

# a process of its own: the Hugging Face libraries in it stay offline whatever they are asked. The
# library sets nothing (every load passes local_files_only=True): set on importing it, these turned
# a host program's own Hugging Face downloads, and its subprocesses', into offline errors
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Adapt models to new tasks from a few examples: transfer learning, domain adaptation, "
                       "meta-learning.")

THRESHOLD_HELP = ("Abstain below this top probability (0 to 1; compared with the score as written, to 6 decimals) "
                  "instead of the calibrated threshold; implies --abstain.")
NONE_LABEL_HELP = "The answer when abstaining."
TOP_HELP = ("Also list each input's K most probable classes and their scores, the most probable first "
            "(all of them where the model has fewer).")

def _show_version(value: bool) -> None:
    if value:
        from quickadapt import __version__

        typer.echo(f"quickadapt {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_show_version, is_eager=True,
                                       help="Print the version and exit.")):
    """Options before the command (only --version)."""


JsonOpt = typer.Option(False, "--json", help="Print one JSON object instead of a summary.")
SeedOpt = typer.Option(0, "--seed", min=0, help="Fixes every source of randomness.")
DeviceOpt = typer.Option("auto", "--device", help="auto, cpu or cuda.")
QuietOpt = typer.Option(False, "--quiet", "-q", help="No progress bars or logs.")
SetOpt = typer.Option(None, "--set", help="Method setting key=value (repeatable); encoder.KEY=value sets the encoder.")


def command(fn=None, *, torchrun: bool = False):
    """Run a command: set up quiet mode, turn user errors into exit code 2 with one line, and
    Ctrl-C into exit code 130 with one line (SIGTERM 143, SIGHUP 129, after the same cleanup).
    `torchrun`: the command shares its work out over torchrun's processes (meta-train); any
    other is refused under torchrun."""
    if fn is None:
        return functools.partial(command, torchrun=torchrun)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from safetensors import SafetensorError

        from quickadapt.progress import set_quiet

        set_quiet(kwargs.get("quiet", False))
        as_json = kwargs.get("as_json", False)
        try:
            with on_command_line(), stop_signals_interrupt():  # messages name options as flags, not keyword arguments
                if not torchrun:
                    _refuse_torchrun(fn.__name__.replace("_", "-"))
                return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except BrokenPipeError:  # the reader left (`quickadapt predict ... | head`): no error of ours
            _stdout_to_devnull()  # nor at exit's flush
            # what a shell reports for a tool the pipe stopped (SIGPIPE is 13 where Windows has no such signal)
            raise typer.Exit(128 + getattr(signal, "SIGPIPE", 13))
        except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM, SIGHUP (meta-train catches the first, to save the run so far)
            signum = getattr(exc, "signum", signal.SIGINT)
            if not _first_process():  # torchrun stops the others when one ends: the first speaks for the run
                raise typer.Exit(128 + signum)
            if signum == signal.SIGINT:
                print(file=sys.stderr)  # off the line ^C was echoed on
            stopped = "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"
            _fail(str(exc.args[0]) if exc.args else  # meta-train's second Ctrl-C names the checkpoint it kept
                  f"{stopped}: nothing was written (outputs are renamed into place only once complete)", as_json,
                  code=128 + signum, prefix="")
        except LostProcess as exc:  # under torchrun: the one line says which checkpoint to resume from
            _fail(str(exc), as_json, code=1)
        except (BadInput, OSError, SafetensorError) as exc:  # OSError: a full or read-only disk, a missing file
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if isinstance(exc, OSError) and exc.filename:
                message = f"{exc.filename}: {exc.strerror}"
            elif isinstance(exc, SafetensorError) and "No space left" in message:
                message = "no space left on the disk while writing tensors; free some and run again"
            _fail(message, as_json)

    # this typer keeps a paragraph's single line breaks, which cut lines in half on a terminal
    # narrower than the source: join them, and let the terminal wrap each paragraph
    paragraphs = inspect.cleandoc(fn.__doc__ or "").split("\n\n")
    wrapper.__doc__ = "\n\n".join(" ".join(p.split("\n")) for p in paragraphs)
    return wrapper


def _refuse_torchrun(name: str) -> None:
    """Under torchrun a command that does not share its work out would run whole in every
    process: N copies of the same work, racing to write one output (the second refused as
    "another quickadapt run is writing") and printing N answers."""
    processes = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if processes > 1:
        raise BadInput(f"{name} runs in one process: under torchrun (WORLD_SIZE={processes}) each of the {processes} "
                       f"processes would run it whole; run it without torchrun (only meta-train shares its work out "
                       f"over processes)")


def _fail(message: str, as_json: bool, *, code: int = 2, prefix: str = "error: "):
    """One line on stderr (and `{"error": ...}` on stdout with --json), then exit with `code`."""
    print(f"{prefix}{message}", file=sys.stderr)
    if as_json and _first_process():
        try:
            print(json.dumps({"error": message}), file=sys.stdout, flush=True)
        except (OSError, AttributeError):  # the reader left, a full disk, a closed stdout: the exit code still says it
            _stdout_to_devnull()
    raise typer.Exit(code)


def _first_process() -> bool:
    """True but in torchrun's other processes, for which the first speaks: one {"error": ...} on
    stdout, not one a process, and one line when a signal stops them all."""
    return os.environ.get("RANK", "0") == "0"


def _stdout_to_devnull() -> None:
    """What could not be written is not tried again when Python flushes stdout at exit."""
    if sys.stdout is not None:
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def write_stdout(write, *, saved: str | None = None, what: str = "the model") -> None:
    """`write(stream)` on stdout, flushed here: a closed stdout (`>&-`), a full disk or a
    read-only destination is one line naming what was saved anyway, not a traceback at exit."""
    kept = f"; {what} was saved to {saved}" if saved else ""
    if sys.stdout is None:
        raise BadInput(f"stdout is closed, so the result cannot be written{kept}")
    try:
        write(sys.stdout)
        sys.stdout.flush()
    except BrokenPipeError:  # the reader left (`| head`): quietly, as the command wrapper does
        raise
    except OSError as exc:
        _stdout_to_devnull()
        raise BadInput(f"cannot write the result to stdout ({exc.strerror or exc}){kept}") from None


def emit(result: dict, as_json: bool, summary: str, what: str = "the model") -> None:
    """`result` (--json) or `summary` on stdout; `what` names the file or folder at `result["out"]`."""
    from quickadapt.output import finite_json

    text = json.dumps(finite_json(result), indent=None, default=str, allow_nan=False) if as_json else summary
    write_stdout(lambda stream: print(text, file=stream), saved=result.get("out"), what=what)


def split_settings(pairs: Optional[List[str]]) -> tuple[dict, dict]:
    """`--set` pairs into (method settings, encoder settings)."""
    from quickadapt.settings import parse_set_options

    values = parse_set_options(pairs)
    method = {k: v for k, v in values.items() if not k.startswith("encoder.")}
    encoder = {k[len("encoder."):]: v for k, v in values.items() if k.startswith("encoder.")}
    return method, encoder


@app.command()
@command
@writes_alone
def fit(
    data: str = typer.Option(..., "--data", help="Labelled training data: file, folder or builtin:NAME."),
    out: Path = typer.Option(..., "--out", help="Folder to write the adapted model to."),
    encoder: Optional[str] = typer.Option(None, "--encoder", help="Encoder name or folder (default by data kind)."),
    strategy: str = typer.Option("probe", "--strategy", help="Transfer strategy (quickadapt strategies lists them), or "
                                                            "auto: chosen by cross-validation (docs/fit.md)."),
    settings: Optional[List[str]] = SetOpt,
    source: Optional[str] = typer.Option(None, "--source", help="Second labelled dataset (joint, multitask)."),
    baseline: bool = typer.Option(False, "--baseline", help="Also measure a model that transfers nothing."),
    cv: int = typer.Option(3, "--cv", help="Folds for the accuracy estimate and threshold (0: skip)."),
    label_names: bool = typer.Option(False, "--label-names", help="Text: also learn from each class's name as one "
                                                                  "more example (card_declined -> 'card declined')."),
    force: bool = typer.Option(False, "--force", help="Replace --out if it exists."),
    seed: int = SeedOpt, device: str = DeviceOpt, quiet: bool = QuietOpt, as_json: bool = JsonOpt,
):
    """Adapt an encoder to a labelled task and save the model."""
    from quickadapt.adapt import DEFAULT_ENCODER, adapt
    from quickadapt.artifact import fit_metrics, prepare_out_dir, save_model
    from quickadapt.data import load_dataset

    prepare_out_dir(out, force, inputs=(data, source, encoder))  # fail before any work
    method, enc_settings = split_settings(settings)
    train = load_dataset(data)
    src = load_dataset(source) if source else None
    encoder = encoder or DEFAULT_ENCODER[train.modality]
    model = adapt(
        train, encoder=encoder, strategy=strategy, strategy_params=method, encoder_params=enc_settings,
        source=src, seed=seed, device=device, cv=cv, baseline=baseline, label_names=label_names, progress=not quiet,
        for_cache=True,  # it saves the model and ends: a frozen encoder whose features are all cached is never built
    )
    save_model(model, out, force=force, seed=seed)  # with the fingerprint and metrics adapt() recorded
    result = {"out": str(out), "encoder": encoder, "strategy": model.strategy, **fit_metrics(model),  # auto: the chosen
              # a model folder's encoder carries what it learnt, unless it never learnt anything (adapt.learned_before)
              "encoder_pretrained": model.info["encoder_pretrained"]}
    if "cv_disagreements" in model.info:  # with their inputs, which the manifest does not keep
        # a feature vector's only name is its position from 0 ("10" beside row 11 read as a value): null, `row` names it
        names = train.named_inputs()
        result["cv_disagreements"] = [{"row": d["row"], "input": None if names is None else names[d["row"] - 1],
                                       **{k: d[k] for k in ("label", "predicted", "score")}}
                                      for d in model.info["cv_disagreements"]]
    emit(result, as_json, fit_summary(result))


def _load(model_dir: Path, device: str):
    from quickadapt.artifact import load_model
    from quickadapt.train import pick_device

    return load_model(model_dir, device=pick_device(device), for_cache=True)  # predict and evaluate only predict


def _model_inputs(model, data, spec: str, model_dir: Path):
    """`data` as `model` reads it (quickadapt/evaluate/scoring.py)."""
    from quickadapt.evaluate.scoring import model_inputs

    return model_inputs(model, data, spec, model_dir)


@app.command()
@command
def predict(
    model_dir: Path = typer.Argument(..., metavar="MODEL", help="A model folder written by fit or domain-adapt."),
    data: str = typer.Option(..., "--data", help="Inputs: text csv/tsv/jsonl, a feature csv or .npz with X, "
                                                 "an image folder, or builtin:NAME."),
    out: Optional[str] = typer.Option(None, "--out", help="Write the predictions here: csv, or by the name's ending "
                                                          ".tsv, .jsonl (one object a line) or .json (default, and "
                                                          "with -: stdout, as csv or the --json object)."),
    task: str = typer.Option("main", "--task", help="Which head of a multitask model: main (the --data task) or source."),
    abstain: bool = typer.Option(False, "--abstain", help="Answer the none-label below the confidence threshold."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help=THRESHOLD_HELP),
    none_label: str = typer.Option("__none__", "--none-label", help=NONE_LABEL_HELP),
    top: Optional[int] = typer.Option(None, "--top", min=1, metavar="K", help=TOP_HELP + " With --abstain they are "
                                      "the classes ranked, beside the none-label answered."),
    force: bool = typer.Option(False, "--force", help="Replace --out if it exists."),
    seed: int = SeedOpt, device: str = DeviceOpt, quiet: bool = QuietOpt, as_json: bool = JsonOpt,
):
    """Predict a label (and score) for every input, in input order (an image folder's: by path
    below it, sorted as plain strings, so img10 comes before img2); --top K: its K likeliest classes too."""
    from quickadapt.artifact import check_model
    from quickadapt.data import load_dataset
    from quickadapt.model import shown_score

    out = _checked_predictions_path(out, force, (data, model_dir))
    check_model(model_dir)  # a missing model is named first; the data is read before the encoder is built
    dataset = load_dataset(data, labels="ignore", row_names=True)
    model = _load(model_dir, device)
    inputs = _model_inputs(model, dataset, data, model_dir)
    ranked = model.predict_top(
        inputs.inputs, top or 1, task=task, abstain=abstain or threshold is not None, none_label=none_label,
        threshold=threshold, progress=None if quiet else "predicting",
    )
    rows = [{"input": i, "label": lab, "score": shown_score(s)}
            for i, lab, s in zip(inputs.input_ids(), ranked.labels, ranked.scores)]
    if top is not None:  # without --top, the rows are as they always were
        _note_fewer_classes(top, model.classes[task])
        _add_top(rows, ranked.top_labels, ranked.top_scores)
    if out is not None:
        _write_predictions_file(out, rows, force)
    if as_json:
        text = json.dumps({"predictions": rows} if out is None else {"out": str(out), "n": len(rows)})
        write_stdout(lambda stream: print(text, file=stream))
    elif out is None:
        write_stdout(lambda stream: _write_csv(stream, rows))
    else:
        write_stdout(lambda stream: print(f"wrote {len(rows)} predictions to {out}", file=stream))


PREDICTION_FORMATS = (".csv", ".tsv", ".jsonl", ".json", ".txt", "")  # .txt and no ending: csv


def _note_fewer_classes(top: int, classes) -> None:
    """--top above the number of classes is not refused (a script asking for 5 suggestions meets a
    3-class model): all of them are ranked, and a top-K accuracy over all classes is 100 %, said here."""
    from quickadapt.progress import log

    if top > len(classes):
        log(f"note: the model has {len(classes)} classes, so --top {top} ranks all {len(classes)}")


def _add_top(rows: list[dict], top_labels, top_scores) -> None:
    """Each row's `top`: its likeliest classes, `label` and `score` each, as predict --top writes them."""
    from quickadapt.model import shown_score

    for row, names, probs in zip(rows, top_labels, top_scores):
        row["top"] = [{"label": lab, "score": shown_score(s)} for lab, s in zip(names, probs)]


def _write_csv(stream, rows, delimiter: str = ",") -> None:
    # predict's columns, or evaluate's per-row ones (input, label, predicted, score)
    rows = [_flat_row(row) for row in rows]
    writer = csv.DictWriter(stream, fieldnames=list(rows[0]) if rows else ["input", "label", "score"],
                            delimiter=delimiter, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    _note_formula_cells(rows)


# a cell a spreadsheet reads as a formula: one that begins so and is not a number (-1.5 is one)
FORMULA_START = ("=", "+", "-", "@")
NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _note_formula_cells(rows) -> None:
    """Say where a text or label written begins as a formula does (=HYPERLINK(...), @SUM(...)):
    Excel and Sheets run it on opening the file. The cells are written as they are, not with
    OWASP's leading quote, which a spreadsheet shows as part of the text: the `input` column
    would no longer match its source, and predictions fed back as training data would train
    on altered texts (docs/cli.md)."""
    from quickadapt.progress import log

    cells = [v for row in rows for v in row.values()
             if isinstance(v, str) and v.startswith(FORMULA_START) and not NUMBER.fullmatch(v)]
    if cells:
        log(f"note: {count(len(cells), 'cell')} written begin{'s' if len(cells) == 1 else ''} with =, +, - or @ "
            f"(the first: {cells[0][:40]!r}), which a spreadsheet opening the csv reads as a formula; "
            "open it with Data > From Text/CSV and those columns as Text, or write --out as .jsonl (docs/cli.md)")


def _flat_row(row: dict) -> dict:
    """A row as csv columns: predict --top's list of classes becomes label_1, score_1, label_2, ..."""
    if "top" not in row:
        return row
    flat = {k: v for k, v in row.items() if k != "top"}
    for n, ranked in enumerate(row["top"], 1):
        flat.update({f"label_{n}": ranked["label"], f"score_{n}": ranked["score"]})
    return flat


def _write_predictions(stream, rows, suffix: str) -> None:
    """Rows in the format the output's name asks for; `.json` holds the object `--json` prints."""
    if suffix == ".jsonl":
        stream.writelines(json.dumps(row) + "\n" for row in rows)
    elif suffix == ".json":
        json.dump({"predictions": rows}, stream)
        stream.write("\n")
    else:
        _write_csv(stream, rows, delimiter="\t" if suffix == ".tsv" else ",")


def _predictions_path(out: str | None) -> Path | None:
    """Where `predict --out` writes, or None for stdout: `-` and a path that is this process's own
    stdout (/dev/stdout) write there just as no --out does, so --json still prints one object."""
    if out is None or out == "-" or _is_stdout(out):
        return None
    if out.endswith(("/", os.sep)):  # Path() drops the slash, and a file named `results` was written
        raise BadInput(f"--out {out} ends with a slash, so it names a folder; give the path of a file to write")
    return Path(out)


def _checked_predictions_path(out: str | None, force: bool, inputs) -> Path | None:
    """`_predictions_path`, checked before any work (quickadapt/output.py; ~ expanded) and
    written in a format its name asks for."""
    from quickadapt.output import check_output

    out = _predictions_path(out)
    if out is not None:
        out = check_output(out, force, inputs=inputs, file=True)
        if out.suffix.lower() not in PREDICTION_FORMATS:  # an .xlsx holding csv would not open
            raise BadInput(f"--out {out}: predictions are written as {', '.join(filter(None, PREDICTION_FORMATS))}; "
                           f"not as {out.suffix}")
    return out


def _is_stdout(path: str) -> bool:
    try:
        return os.path.samestat(os.stat(Path(path).expanduser()), os.fstat(sys.stdout.fileno()))
    except (OSError, ValueError, AttributeError, RuntimeError):  # missing; a stdout with no file (tests); no home
        return False


def _write_predictions_file(path: Path, rows, force: bool) -> None:
    """A device or fifo is written into (quickadapt/output.py); a file is written whole beside
    `path` and then published, so a reader never sees half of it."""
    from quickadapt.output import written_in_place

    if written_in_place(path):
        with _open_predictions(path) as f:
            _write_predictions(f, rows, path.suffix.lower())
        return
    _write_predictions_atomically(path, rows, force)


def _open_predictions(path: Path):
    # a file name in another encoding (stand-ins for its bytes) is written back as those bytes
    return open(path, "w", newline="", encoding="utf-8", errors="surrogateescape")


def _write_predictions_atomically(path: Path, rows, force: bool) -> None:
    from quickadapt.artifact import temp_stem

    # a link is followed, as for a model folder: the file it points to is replaced, the link kept
    path = Path(os.path.realpath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    # a name no other writer has: by the process id, two containers (each its process 1) or two
    # machines sharing the folder wrote one temp file, and the first to finish published a mix
    tmp = path.with_name(f".{temp_stem(path)}.{uuid.uuid4().hex}.tmp")
    try:
        with _open_predictions(tmp) as f:
            _write_predictions(f, rows, path.suffix.lower())
        _publish(tmp, path, force)
    finally:
        tmp.unlink(missing_ok=True)


def _publish(tmp: Path, path: Path, force: bool) -> None:
    """Move `tmp` to `path`. Without `force`, never over a file: one that appeared while the
    predictions were computed (checked only before) is someone else's. A hard link is made only
    where no file is, in one step; where the file system has none, the check is repeated instead."""
    if force:
        os.replace(tmp, path)
        return
    appeared = BadInput(f"{path} appeared while predicting; choose another --out or pass --force to replace it")
    try:
        os.link(tmp, path)  # the caller removes tmp
    except FileExistsError:
        raise appeared from None
    except OSError:  # no hard links here (some network and FAT file systems)
        if os.path.lexists(path):
            raise appeared from None
        os.replace(tmp, path)


@app.command()
@command
def evaluate(
    model_dir: Path = typer.Argument(..., metavar="MODEL", help="A model folder written by fit or domain-adapt."),
    data: str = typer.Option(..., "--data", help="Labelled test data."),
    task: str = typer.Option("main", "--task", help="Which head of a multitask model: main (the --data task) or source."),
    abstain: bool = typer.Option(False, "--abstain", help="Answer the none-label below the confidence threshold."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help=THRESHOLD_HELP),
    none_label: str = typer.Option("__none__", "--none-label", help=NONE_LABEL_HELP),
    oos_label: Optional[str] = typer.Option(None, "--oos-label", help="Test label that marks out-of-scope rows."),
    top: Optional[int] = typer.Option(None, "--top", min=1, metavar="K", help="Also the top-K accuracy: how often the "
                                      "test label is among the K most probable classes (abstaining or not)."),
    out: Optional[str] = typer.Option(None, "--out", help="Also write every row: input, label (the test's), predicted "
                                                          "and score (with --top, its classes as predict --top "
                                                          "writes them); csv, or .tsv, .jsonl, .json as predict --out."),
    force: bool = typer.Option(False, "--force", help="Replace --out if it exists."),
    against: Optional[Path] = typer.Option(None, "--against", help="Another model folder (the one in use) scored on "
                                                                    "the same rows: both accuracies and whether the "
                                                                    "difference is more than noise (McNemar's test)."),
    seed: int = SeedOpt, device: str = DeviceOpt, quiet: bool = QuietOpt, as_json: bool = JsonOpt,
):
    """Accuracy and macro F1 on labelled test data, the classes with the lowest F1 and the pairs most often mixed up
    (--json: every class's scores; --top K: top-K accuracy; --out: every row's prediction; --against OLD: the same
    rows scored by another model)."""
    from quickadapt.artifact import check_model
    from quickadapt.data import load_dataset
    from quickadapt.data.loaders import label_text
    from quickadapt.evaluate.scoring import score_test_data
    from quickadapt.model import shown_score

    if oos_label is not None:
        oos_label = label_text(oos_label)  # as the test file's labels are read: -1.0 is -1
    if out is not None and _predictions_path(out) is None:  # predict's stdout: here it holds the summary
        raise BadInput(f"--out {out} is stdout, where evaluate prints its summary; give a file to write the rows to")
    out = _checked_predictions_path(out, force, (data, model_dir))  # fail before any work
    check_model(model_dir)  # as predict: a missing model named first, bad data before the encoder is built
    if against is not None:
        check_model(against)
    read = load_dataset(data)
    model = _load(model_dir, device)
    abstaining = abstain or threshold is not None
    scored = score_test_data(model, model_dir, read, data, task=task, abstain=abstain, threshold=threshold,
                             none_label=none_label, oos_label=oos_label, top=top,
                             progress=None if quiet else "evaluating")
    report, test, labels, scores = scored.report, scored.test, scored.labels, scored.scores
    abstained = f" ({report['n_abstained']} abstained, counted wrong)" if report.get("n_abstained") else ""
    low, high = report.get("accuracy_ci95") or (0, 0)
    summary = (f"accuracy {report['accuracy']:.1%} (95% CI {low:.1%}-{high:.1%})  macro F1 {report['macro_f1']:.1%}  "
               f"on {report['n']} examples{abstained}"
               if report["n"] else "no in-scope examples: accuracy and macro F1 are not defined")
    if top is not None:
        _note_fewer_classes(top, model.classes[task])
        if report["n"]:
            summary += (f"\ntop-{report['top_k']} accuracy {report['top_k_accuracy']:.1%} (the test label among the "
                        f"{report['top_k']} most probable classes)")
    summary += _lowest_f1(report["per_class"]) + _most_confused(report["confusions"])
    if oos_label is not None and report.get("oos_recall") is not None:
        low, high = report["oos_recall_ci95"]
        summary += (f"\nout-of-scope recall {report['oos_recall']:.1%} (95% CI {low:.1%}-{high:.1%}) on "
                    f"{report['n_oos']} examples")
        if not abstaining:  # every input got a class: no recall is possible
            summary += " (without --abstain every input gets a class; add it to answer none of these)"
        summary += _oos_swallowers(report["per_class"])
    if against is not None:
        other = _load(against, device)
        other_labels, _ = other.predict(
            _model_inputs(other, read, data, against).inputs, task=task, abstain=abstaining, none_label=none_label,
            threshold=threshold, progress=None if quiet else f"evaluating {against}")
        # in this model's class names: an older model may have stored class 1 as "1.0" (model.class_index)
        report["against"] = _compare_on_rows(test.labels, labels, model.as_classes(other_labels, task),
                                             model.as_classes(other.classes[task], task), oos_label,
                                             none_label if abstaining else None, against)
        summary += _against_summary(report["against"], report)
    if out is not None:  # which rows it got wrong, and as what: the figures above do not say
        # written last, so a command that fails (an --against model of other inputs) leaves no file
        rows = [{"input": i, "label": t, "predicted": p, "score": shown_score(sc)} for i, t, p, sc
                in zip(test.input_ids(), test.labels, labels, scores)]
        if top is not None:  # the classes the top-K accuracy counted, row by row
            _add_top(rows, scored.top_labels, scored.top_scores)
        _write_predictions_file(out, rows, force)
        report["out"] = str(out)
        summary += f"\nwrote {len(test)} rows (input, label, predicted, score{', top' if top else ''}) to {out}"
    summary += "".join(f"\nwarning: {w}" for w in report["warnings"])
    emit(report, as_json, summary, what="every row's prediction")


def _compare_on_rows(truth, labels, other_labels, other_classes, oos_label, none_label, other_dir: Path) -> dict:
    """The other model's figures on the same test rows, and McNemar's exact test on the in-scope
    rows (those accuracy counts) that only one of the two gets right, as fit compares a model
    with its baseline: two models a point apart on 100 rows (2 rows against 1) are p = 0.5 apart,
    noise, which their accuracies alone do not say. A test class the other model never learnt
    (one added since) counts wrong for it."""
    import numpy as np

    from quickadapt.evaluate.cv import discordant, mcnemar_p, mcnemar_two_sided_p
    from quickadapt.evaluate.metrics import classification_report

    truth, labels, other_labels = (np.asarray(list(a), dtype=object) for a in (truth, labels, other_labels))
    theirs = classification_report(truth, other_labels, oos_label=oos_label, none_label=none_label)
    in_scope = truth != oos_label if oos_label is not None else np.ones(len(truth), dtype=bool)
    right, other_right = (labels == truth)[in_scope], (other_labels == truth)[in_scope]
    only_this, only_other = discordant(right, other_right)
    return {"model": str(other_dir), "accuracy": theirs["accuracy"], "macro_f1": theirs["macro_f1"],
            **({"oos_recall": theirs["oos_recall"]} if "oos_recall" in theirs else {}),
            "n": int(in_scope.sum()), "only_this_right": only_this,
            "only_other_right": only_other,
            "p_better": mcnemar_p(right, other_right), "p_worse": mcnemar_p(other_right, right),
            "p_two_sided": mcnemar_two_sided_p(right, other_right),
            "classes_unknown_to_other": sorted(set(truth[in_scope].tolist()) - set(other_classes))}


def _against_summary(c: dict, report: dict) -> str:
    """Both accuracies on the same rows and whether the difference is more than noise (and both
    out-of-scope recalls: a model that answers more out-of-scope questions can gain accuracy)."""
    from quickadapt.evaluate.cv import SIGNIFICANCE

    if not c["n"]:
        return f"\nagainst {c['model']}: no in-scope rows to compare on"
    line = (f"\nagainst {c['model']} on the same {c['n']} rows: accuracy {c['accuracy']:.1%} there, "
            f"{report['accuracy']:.1%} here; ")
    if c.get("oos_recall") is not None:
        line += f"out-of-scope recall {c['oos_recall']:.1%} there, {report['oos_recall']:.1%} here; "
    line += f"{c['only_this_right']} right here only, {c['only_other_right']} there only: "
    # either model may be the better: the verdict either way rests on the two-sided test
    p = c["p_two_sided"]
    if p < SIGNIFICANCE:
        line += (f"this model is better (McNemar {p_shown(p)})" if c["only_this_right"] > c["only_other_right"]
                 else f"this model is WORSE (McNemar {p_shown(p)})")
    else:
        line += f"the difference is within the noise of {c['n']} rows (McNemar p = {p:.2f})"
    unknown = c["classes_unknown_to_other"]
    if unknown:
        line += (f"\n{c['model']} never learnt {', '.join(unknown[:5])}{', ...' if len(unknown) > 5 else ''}: "
                 f"{'its' if len(unknown) == 1 else 'their'} rows count wrong for it")
    return line


def _lowest_f1(per_class: dict) -> str:
    """Lines naming the three tested classes with the lowest F1, the ones to look at first (--json
    has them all), and how many answered classes the test data lacks: their F1 is 0 by
    definition, so they would fill the lowest ones and hide the tested classes that do worst."""
    tested = {lab: m for lab, m in per_class.items() if m["support"]}
    untested = sorted(lab for lab, m in per_class.items() if not m["support"] and m["f1"] is not None)
    lines = ""
    if len(tested) > 1:
        worst = sorted(tested.items(), key=lambda kv: (kv[1]["f1"], kv[0]))[:3]
        lines += "\nlowest F1: " + ", ".join(f"{lab} {m['f1']:.1%}" for lab, m in worst)
    if untested:
        named = ", ".join(untested[:3]) + (", ..." if len(untested) > 3 else "")
        lines += (f"\n{len(untested)} {'class' if len(untested) == 1 else 'classes'} answered but not in the test data "
                  f"({named}): F1 0 each, in the macro F1 over {len(tested) + len(untested)} classes")
    return lines


def _most_confused(found: list[dict]) -> str:
    """A line naming the three (true -> answered) pairs with the most wrong rows (--json has them all)."""
    if not found:
        return ""
    return "\nmost confused: " + ", ".join(f"{c['label']} -> {c['predicted']} {c['count']}" for c in found[:3])


def _oos_swallowers(per_class: dict) -> str:
    """A line naming the classes that answered the most out-of-scope rows: their precision is over
    in-scope rows only, so it does not show them."""
    most = sorted(((m["oos_answered"], lab) for lab, m in per_class.items() if m.get("oos_answered")),
                  key=lambda nl: (-nl[0], nl[1]))[:3]
    return ("\nout-of-scope rows answered most as: " + ", ".join(f"{lab} {n}" for n, lab in most)) if most else ""


@app.command()
@command
def report(
    model_dir: Path = typer.Argument(..., metavar="MODEL", help="A model folder (fit, domain-adapt or meta-train)."),
    out: Path = typer.Option(..., "--out", help="Folder to write index.html and its PNG plots to."),
    data: Optional[str] = typer.Option(None, "--data", help="Labelled test data: adds evaluate's figures, every "
                                                            "class's scores, a confusion matrix and confidences."),
    task: str = typer.Option("main", "--task", help="Which head of a multitask model: main (the --data task) or source."),
    abstain: bool = typer.Option(False, "--abstain", help="Score as evaluate --abstain: the none-label below the "
                                                          "calibrated threshold."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help=THRESHOLD_HELP),
    none_label: str = typer.Option("__none__", "--none-label", help=NONE_LABEL_HELP),
    oos_label: Optional[str] = typer.Option(None, "--oos-label", help="Test label that marks out-of-scope rows."),
    force: bool = typer.Option(False, "--force", help="Replace --out if it exists."),
    seed: int = SeedOpt, device: str = DeviceOpt, quiet: bool = QuietOpt, as_json: bool = JsonOpt,
):
    """A self-contained HTML page about a model and its PNG plots: what it is, what its fit measured
    (the cross-validated estimate beside the baseline, the abstain threshold; a meta-trained encoder's
    class split and validation; a domain-adapted model's candidates), and with --data TEST what
    evaluate measures, every class's scores, a confusion matrix and a confidence histogram."""
    from quickadapt.evaluate.report import write_report

    r = write_report(model_dir, out, data=data, task=task, abstain=abstain, threshold=threshold, oos_label=oos_label,
                     none_label=none_label, force=force, device=device, progress=not quiet)
    test = r.get("test")
    figures = (f"; accuracy {test['accuracy']:.1%}, macro F1 {test['macro_f1']:.1%} on {test['n']} test rows"
               if test and test.get("n") else "")
    figures += "".join(f"\nwarning: {w}" for w in (test or {}).get("warnings", []))  # as evaluate prints them
    emit(r, as_json, f"wrote {r['index']} and {count(len(r['plots']), 'plot')}{figures}", what="the report")


@app.command()
@command
def datasets(as_json: bool = JsonOpt, quiet: bool = QuietOpt):
    """List the built-in datasets (use them as builtin:NAME)."""
    from quickadapt.data import list_builtin

    items = list_builtin()
    emit({"datasets": items}, as_json, "\n".join(
        f"builtin:{d['name']:<22} {d['modality']:<8} {d['n']:>6} examples  {d['classes']:>4} classes  {d['description']}"
        + ("" if d["available"] else "  [not installed]") for d in items))


def plugin_encoders(built_in) -> list[dict]:
    """The encoders installed plugins register, listed as the built-in ones are (with the module
    that registered each). Only when a plugin is installed: reading them imports torch, which the
    plain listing does not (0.2 s against 1.2-1.4 s)."""
    from importlib.metadata import entry_points

    from quickadapt.registry import PLUGIN_GROUP

    if not entry_points(group=PLUGIN_GROUP):
        return []
    from quickadapt.encoders import ENCODERS, encoder_defaults, encoder_modality

    return [{"name": n, "modality": encoder_modality(n) or "?", "settings": encoder_defaults(ENCODERS.get(n)),
             "plugin": ENCODERS.module(n)} for n in ENCODERS.names() if n not in built_in]


@app.command()
@command
def encoders(as_json: bool = JsonOpt, quiet: bool = QuietOpt):
    """List the encoders by name and their settings (--set encoder.KEY=value); a local Hugging Face
    model folder's path also works, as a text or an image encoder by what the folder holds."""
    from quickadapt.encoder_catalog import ENCODER_CATALOG, FOLDER_CATALOG  # not the classes: they import torch

    items = [{"name": n, "modality": modality, "settings": settings}
             for n, (modality, settings) in sorted(ENCODER_CATALOG.items())] + plugin_encoders(ENCODER_CATALOG)
    folders = [{"holding": holding, "modality": modality, "settings": settings}
               for holding, modality, settings in FOLDER_CATALOG]

    def line(name: str, e: dict) -> str:
        plugin = f"  (plugin {e['plugin']})" if e.get("plugin") else ""
        return f"{name:<20} {e['modality']:<9} {' '.join(f'{k}={v!r}' for k, v in e['settings'].items())}".rstrip() + plugin

    emit({"encoders": items, "folders": folders}, as_json, "\n".join(
        [*(line(e["name"], e) for e in items),
         *(line("PATH", f) + f"  (a Hugging Face folder with {f['holding']})" for f in folders)]))


@app.command()
@command
def strategies(as_json: bool = JsonOpt, quiet: bool = QuietOpt):
    """List the transfer strategies and their settings."""
    from quickadapt.data.dataset import MODALITIES
    from quickadapt.select.strategy import AUTO, CANDIDATES, COSTLY, AutoConfig
    from quickadapt.settings import config_to_dict, describe_settings
    from quickadapt.transfer import STRATEGIES

    items = [{"name": n, "settings": STRATEGIES.get(n)().params(), "accepts": describe_settings(STRATEGIES.get(n).Config),
              "modalities": list(STRATEGIES.get(n).modalities)} for n in STRATEGIES.names()]
    # not a registered strategy (it picks one of them), so listed apart, with what it chooses among
    auto = {"settings": config_to_dict(AutoConfig()), "accepts": describe_settings(AutoConfig),
            "candidates": {m: list(c) for m, c in CANDIDATES.items()}, "within_budget": {m: list(c) for m, c in COSTLY.items()}}
    emit({"strategies": items, AUTO: auto}, as_json, "\n".join(
        f"{s['name']}{'' if set(s['modalities']) == set(MODALITIES) else ' (' + ' and '.join(s['modalities']) + ' only)'}\n" + "\n".join(f"  {f'{k} = {v!r}':<30} {s['accepts'][k]}" for k, v in s["settings"].items())
        for s in items) + f"\n{AUTO} (chosen by cross-validation: "
        + "; ".join(f"{m}: {', '.join(c)}" + (f", {', '.join(COSTLY[m])} within the budget" if m in COSTLY else "")
                    for m, c in CANDIDATES.items()) + "; CANDIDATE.KEY=value reaches one candidate)\n"
        + "\n".join(f"  {f'{k} = {v!r}':<30} {auto['accepts'][k]}" for k, v in auto["settings"].items()))


@app.command()
@command
def demo(
    shots: str = typer.Option("1,5,10", "--shots", help="Examples per class to try."),
    seed: int = SeedOpt, device: str = DeviceOpt, quiet: bool = QuietOpt, as_json: bool = JsonOpt,
):
    """Few-shot intent classification on CLINC150 (150 intents) at 1/5/10 examples per class."""
    from quickadapt.demo import run_demo

    try:
        ks = [int(k) for k in shots.split(",") if k.strip()]
    except ValueError:
        raise BadInput(f"--shots takes whole numbers separated by commas, e.g. 1,5,10; got {shots!r}") from None
    result = run_demo(ks, seed=seed, device=device, progress=not quiet)
    emit(result, as_json, result.pop("table"))


@app.command()
@command
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="The address to listen on (127.0.0.1: this machine only; "
                                                        "0.0.0.0: every interface, with QUICKADAPT_TOKEN set)."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="The port (0: a free one, named at start)."),
    model: Optional[List[Path]] = typer.Option(None, "--model", metavar="DIR", help="Also serve this model folder "
                                               "(fit's) as a read-only task named by the folder (repeatable)."),
    state: Optional[Path] = typer.Option(None, "--state", metavar="DIR", help="Keep the tasks created over HTTP in "
                                         "this folder, so that they survive a restart (default: in memory only)."),
    max_body_mb: float = typer.Option(32.0, "--max-body-mb", help="Refuse request bodies larger than this (413)."),
    max_inputs: int = typer.Option(1000, "--max-inputs", help="Inputs one predict call may send (413 above)."),
    max_examples: int = typer.Option(10000, "--max-examples", help="Examples one task may hold (413 above)."),
    max_tasks: int = typer.Option(1000, "--max-tasks", help="Tasks created over HTTP the service holds at once; "
                                                            "a new one past it is refused (413) until one is deleted."),
    seed: int = SeedOpt, device: str = DeviceOpt, quiet: bool = QuietOpt,
):
    """Serve adaptation over HTTP (JSON): POST /v1/tasks with labelled examples adapts a model in
    memory, POST /v1/tasks/ID/predict answers with it (docs/serve.md). Set QUICKADAPT_TOKEN to
    require 'Authorization: Bearer TOKEN'. Logs go to stderr; Ctrl-C, SIGTERM or SIGHUP stops it cleanly."""
    from quickadapt.serve.limits import Limits
    from quickadapt.serve.run import serve as run_service

    limits = Limits(max_body_mb=max_body_mb, max_inputs=max_inputs, max_examples=max_examples, max_tasks=max_tasks)
    run_service(host=host, port=port, models=model or [], state=state, limits=limits, seed=seed, device=device,
                quiet=quiet)


@app.command("domain-adapt")
@command
@writes_alone
def domain_adapt(
    source: str = typer.Option(..., "--source", help="Labelled source data: file, folder or builtin:NAME."),
    target: str = typer.Option(..., "--target", help="Unlabelled target data (labels, if any, are ignored)."),
    out: Path = typer.Option(..., "--out", help="Folder to write the adapted model to."),
    method: str = typer.Option("auto", "--method", help="Domain adaptation method, or auto (falls back to source-only)."),
    settings: Optional[List[str]] = SetOpt,
    encoder: Optional[str] = typer.Option(None, "--encoder", help="Encoder name or folder (default: mlp, minilm or conv4 by data kind)."),
    target_test: Optional[str] = typer.Option(None, "--target-test", help="Labelled target data, for evaluation only."),
    criterion: str = typer.Option("dev", "--criterion", help="Label-free validator: dev, iwv, entropy, snd or im."),
    refit: bool = typer.Option(True, "--refit/--no-refit", help="Refit the chosen method on all of the source "
                                                               "(the validators hold out a fifth of it to choose)."),
    force: bool = typer.Option(False, "--force", help="Replace --out if it exists."),
    seed: int = SeedOpt, device: str = DeviceOpt, quiet: bool = QuietOpt, as_json: bool = JsonOpt,
):
    """Adapt a classifier from a labelled source to an unlabelled target domain and save it."""
    from quickadapt.artifact import prepare_out_dir, save_model
    from quickadapt.domain import adapt_domain

    prepare_out_dir(out, force, inputs=(source, target, target_test, encoder))  # fail before any work
    method_params, enc_settings = split_settings(settings)
    model = adapt_domain(  # read from the paths as the Python API reads them (a target's labels are never needed)
        source, target, method, method_params, encoder, seed, device, encoder_params=enc_settings,
        target_test=target_test or None, criterion=criterion, refit=refit, progress=not quiet,
    )
    if quiet:  # warnings are shown even when quiet
        for w in model.info["warnings"]:
            print(f"warning: {w}", file=sys.stderr)
    info = model.info
    result = {
        "out": str(out), "method": info["domain_method"], "requested_method": method,
        "encoder": model.strategy_params.get("encoder"), "criterion": info["criterion"],
        "features": model.info.get("train", {}).get("features"),
        "negative_transfer": info.get("negative_transfer"), "methods": info["methods"], "warnings": info["warnings"],
        **({"criterion_lead_se": info["criterion_lead_se"]} if "criterion_lead_se" in info else {}),
        "refit": info["refit"], "n_source_fit": info["n_source_fit"],
        **({"target_test_accuracy": info["target_test_accuracy"]} if "target_test_accuracy" in info else {}),
        **({"target_test_vs_source_only": info["target_test_vs_source_only"]}
           if "target_test_vs_source_only" in info else {}),
    }
    save_model(model, out, force=force, data_fingerprint=info["data_fingerprint"], seed=seed, metrics={"domain": result})
    emit(result, as_json, domain_summary(result))


@app.command("meta-train")
@command(torchrun=True)
def meta_train_cmd(
    data: str = typer.Option(..., "--data", help="Images in class folders (root/<group>/<class>/ nests), builtin:omniglot, "
                                                 "or text: a .csv/.jsonl with text,label (an optional group column "
                                                 "splits classes by group) or builtin:clinc150-train (split by domain)."),
    method: str = typer.Option(..., "--method", help="protonet, matchingnet, maml, fomaml, anil, metasgd or reptile "
                                                     "(text: protonet, matchingnet or anil)."),
    ways: int = typer.Option(..., "--ways", min=2, help="Classes per episode (N)."),
    shots: int = typer.Option(..., "--shots", min=1, help="Support examples per class (K)."),
    out: Path = typer.Option(..., "--out", help="Folder for the meta-trained encoder (and its checkpoint)."),
    queries: int = typer.Option(5, "--queries", min=1, help="Query examples per class in training episodes."),
    steps: int = typer.Option(2000, "--steps", min=1, help="Meta-steps (one meta-batch each)."),
    meta_batch: int = typer.Option(16, "--meta-batch", min=1, help="Episodes per meta-step."),
    time_budget: Optional[float] = typer.Option(None, "--time-budget", help="Stop after this many seconds (saves first)."),
    checkpoint_every: float = typer.Option(300.0, "--checkpoint-every", min=0, help="Seconds between checkpoints."),
    no_rotations: bool = typer.Option(False, "--no-rotations", help="Do not add 90/180/270-degree rotations as classes "
                                                                     "(images only; text never rotates)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run whose checkpoint is in --out."),
    encoder: Optional[str] = typer.Option(None, "--encoder", help="Start from this encoder, a name or folder "
                                                                  "(default: conv4 from random init for images, minilm for text)."),
    settings: Optional[List[str]] = SetOpt,
    force: bool = typer.Option(False, "--force", help="Replace --out if it exists."),
    seed: int = SeedOpt, device: str = DeviceOpt, quiet: bool = QuietOpt, as_json: bool = JsonOpt,
):
    """Meta-train an encoder on N-way K-shot episodes; resumable with --resume.

    Supervised pretraining first (body + linear head, cross-entropy over every meta-training
    class, rotations included; then the head is dropped): --set pretrain_steps=N (default 0: none;
    also pretrain_batch, pretrain_lr, pretrain_budget seconds). The pretrained body alone is kept
    in OUT/pretrained for `quickadapt episodes OUT/pretrained`.

    More variety for image classes (docs/meta.md): --set augment=true (a small random affine
    change of every training image), augment=elastic (a smooth warp too; warp=F its amplitude,
    a fraction of the side), mirrors=true (each class's mirror image as one more class).

    Early stopping: every 100 steps and at the end the model is scored on 100 fixed episodes
    from the validation classes, and the best weights are kept (--set validate_every=N, 0: off;
    --set validate_episodes=E)."""
    from quickadapt.meta.run import run_meta_train

    if time_budget is not None and not 0 < time_budget < float("inf"):  # nan fails the test as well
        raise BadInput(f"--time-budget must be a number of seconds above 0, got {time_budget:g}")
    method_params, enc_settings = split_settings(settings)
    r = run_meta_train(
        data, method=method, n_way=ways, k_shot=shots, out=out, n_query=queries, steps=steps, meta_batch=meta_batch,
        time_budget=time_budget, settings=method_params, encoder_settings=enc_settings,
        rotations=False if no_rotations else None, encoder=encoder,
        seed=seed, resume=resume, force=force, device=device, checkpoint_every=checkpoint_every, progress=not quiet,
    )
    if "rank" in r:  # another process of a torchrun launch: the first one reports
        return
    acc = "-" if r["running_accuracy"] is None else f"{r['running_accuracy']:.1%}"
    val = r.get("validation") or {}
    fewer = f" on {val['n_way']}-way episodes: fewer validation classes" if val.get("n_way", ways) != ways else ""
    val_text = (f", kept step {val['best_step']} (validation accuracy {val['best_accuracy']:.1%}{fewer})"
                if "best_step" in val else "")
    pre = r["start"].get("pretrain")
    pre_text = (f"pretrained {pre['steps']} steps on {pre['classes']} classes ({pre['seconds']:.0f} s, stopped by "
                f"{pre['stopped']}; body alone in {Path(r['out']) / 'pretrained'}), then " if pre else "")
    emit(r, as_json, f"{pre_text}meta-trained {r['method']} {r['n_way']}-way {r['k_shot']}-shot for {r['steps']} steps "
                     f"({r['seconds']:.0f} s, stopped by {r['stopped']}), running query accuracy {acc}{val_text} "
                     f"-> {r['out']}")


@app.command()
@command
def episodes(
    model_dir: Path = typer.Argument(..., metavar="MODEL", help="A model folder written by meta-train, or any encoder "
                                                                 "(name or folder: the baseline without meta-training)."),
    data: str = typer.Option(..., "--data", help="Images in class folders, builtin:omniglot, or text: a .csv/.jsonl "
                                                 "with text,label (and an optional group column) or builtin:clinc150-train."),
    ways: int = typer.Option(..., "--ways", min=2, help="Classes per episode (N)."),
    shots: int = typer.Option(..., "--shots", min=1, help="Support examples per class (K)."),
    n_episodes: int = typer.Option(600, "--episodes", min=1, help="How many seeded episodes."),
    queries: int = typer.Option(15, "--queries", min=1, help="Query examples per class."),
    split: str = typer.Option("test", "--split", help="Classes to draw from: test (held out), val, train or all."),
    adapt_with: str = typer.Option("method", "--adapt", help="method (as meta-trained), prototypes, or finetune "
                                                            "(a few steps on each support set)."),
    settings: Optional[List[str]] = typer.Option(None, "--set", help="For --adapt finetune: finetune_steps=N (default 20), "
                                                                      "finetune_lr=X (default: a tenth of the encoder's fine-tuning rate). "
                                                                      "For images with --adapt prototypes or finetune (or a ProtoNet or "
                                                                      "Matching Networks model): views=N, each image's features averaged over it "
                                                                      "and N random affine views of it (default 0)."),
    split_from: Optional[Path] = typer.Option(None, "--split-from", help="For a plain encoder: draw from the class split "
                                                                         "stored with this folder (a meta-trained model), "
                                                                         "to compare with it on the same classes."),
    seed: int = SeedOpt, device: str = DeviceOpt, quiet: bool = QuietOpt, as_json: bool = JsonOpt,
):
    """N-way K-shot accuracy of a meta-trained model with a 95% confidence interval.

    A plain encoder's classes are split as `meta-train --seed` splits them; --split-from META_DIR
    uses the split stored with that model instead, so both are scored on the same classes."""
    from quickadapt.meta.run import run_episodes
    from quickadapt.settings import parse_set_options

    r = run_episodes(model_dir, data, n_way=ways, k_shot=shots, episodes=n_episodes, n_query=queries, split=split,
                     adapt=adapt_with, seed=seed, device=device, progress=not quiet, settings=parse_set_options(settings),
                     split_from=split_from)
    emit(r, as_json, f"{r['n_way']}-way {r['k_shot']}-shot accuracy {r['accuracy']:.1%} "
                     + (f"± {r['ci95']:.1%} (95% CI) " if r["ci95"] is not None
                        else "(one episode: no confidence interval) " if r["episodes"] == 1
                        else "(every episode scored alike: no spread to estimate a confidence interval from) ")
                     + f"over {count(r['episodes'], 'episode')} from {r['classes']} "
                     f"{'classes (all)' if r['split'] == 'all' else r['split'] + ' classes'} "
                     f"({_episodes_model(r)}, adapt: {r['adapt']}"
                     + (f", {count(r['views'], 'view')})" if r["views"] else ")") + "\n" + _episode_classes(r))


@app.command()
@command
def rank(
    data: str = typer.Option(..., "--data", help="Labelled training data: file, folder or builtin:NAME."),
    encoders: List[str] = typer.Option(..., "--encoders", help="Candidates, comma-separated: encoder names or folders "
                                                               "(a quickadapt model, a Hugging Face folder); settings in "
                                                               "brackets: "  # \\[ : the help's markup reads [...] as a style
                                                               "efficientnet-lite0\\[size=128], conv4\\[size=84;grey=no]. "
                                                               "Repeatable; a value or part that names an existing "
                                                               "folder is taken whole, so give a folder whose path has a "
                                                               "comma or brackets as one --encoders of its own."),
    scores: str = typer.Option(",".join(("logme", "hscore", "leep", "nce")), "--scores",
                               help="Scores to compute, comma-separated; the first ranks the candidates."),
    seed: int = SeedOpt, device: str = DeviceOpt, quiet: bool = QuietOpt, as_json: bool = JsonOpt,
):
    """Rank candidate encoders for a labelled task by transferability scores, without training.

    Each candidate embeds the examples (through the embedding cache; nothing is downloaded); the
    first score ranks them, higher is better (docs/select.md says what each score means)."""
    from quickadapt.data import load_dataset
    from quickadapt.select import rank as rank_encoders

    candidates = _candidates(encoders)
    names = [s.strip() for s in scores.split(",") if s.strip()]
    r = rank_encoders(load_dataset(data), candidates, scores=names, seed=seed, device=device, progress=not quiet)
    emit(r, as_json, _rank_table(r))


def _candidates(given: list[str]) -> list:
    """Each `--encoders` split at the commas outside brackets, each part NAME or NAME[key=value;...].
    A value or part that names an existing folder is taken whole: a folder's path may hold commas
    or brackets (models/bert,v2, runs/[exp1]) that would otherwise split it or read as settings."""
    from quickadapt.settings import parse_set_options

    parts = []
    for value in given:
        if _is_folder(value):
            parts.append(value)
            continue
        depth, current = 0, ""
        for ch in value:
            depth += {"[": 1, "]": -1}.get(ch, 0)
            if ch == "," and depth == 0:
                parts.append(current)
                current = ""
            else:
                current += ch
        parts.append(current)
    candidates = []
    for part in (p.strip() for p in parts):
        if not part:
            continue
        if _is_folder(part):
            candidates.append(part)
            continue
        if not part.endswith("]") or "[" not in part:
            if "[" in part or "]" in part:
                raise BadInput(f"--encoders: {part!r} is not NAME or NAME[key=value;...]")
            candidates.append(part)
            continue
        name, _, inner = part[:-1].partition("[")
        pairs = [p.strip() for p in inner.split(";") if p.strip()]
        if not name.strip() or any("=" not in p for p in pairs):
            raise BadInput(f"--encoders: {part!r} is not NAME or NAME[key=value;...]")
        candidates.append((name.strip(), parse_set_options(pairs)))  # values read as --set reads them
    if not candidates:
        raise BadInput("--encoders names no candidate")
    return candidates


def _is_folder(value: str) -> bool:
    return bool(value.strip()) and Path(value.strip()).expanduser().is_dir()


def _rank_table(r: dict) -> str:
    """The ranked candidates as an aligned table, the primary score first."""
    from quickadapt.select.rank import SOURCE_GMM

    names = [r["primary"]] + [s for s in r["scores"] if s != r["primary"]]
    header = ["rank", "encoder"] + names + ["dim", "embed s"]
    rows = []
    for c in r["candidates"]:
        shown = c["encoder"] + (f"[{';'.join(f'{k}={v}' for k, v in c['settings'].items())}]" if c["settings"] else "")
        cells = [str(c["rank"]), shown]
        for s in names:
            value = c["scores"][s]
            mark = "*" if s == "leep" and c["leep_source"] == SOURCE_GMM else ""
            cells.append("-" if value is None else f"{value:.4f}{mark}")
        rows.append(cells + [str(c["embed_dim"]), f"{c['embed_seconds']:.1f}"])
    widths = [max(len(row[i]) for row in [header] + rows) for i in range(len(header))]
    lines = [f"{r['n_examples']} examples, {r['n_classes']} classes; ranked by {r['primary']} (higher is better)"]
    lines += ["  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
              for row in [header] + rows]
    notes = []
    if any(c["leep_source"] == SOURCE_GMM for c in r["candidates"]) and "leep" in names:
        notes.append("* N-LEEP: a Gaussian mixture on the features stands in for a source classifier")
    skipped = {why for c in r["candidates"] for why in c["skipped"].values()}
    notes += [f"- {why}" for why in sorted(skipped)]
    return "\n".join(lines + notes)


SHOWN_CLASSES = 10  # more class names than this are listed by --json only


def _episode_classes(r: dict) -> str:
    """Which classes the episodes drew from, and whose split they came from: a baseline and a
    meta-trained model compare only on the same classes."""
    part = "classes" if r["split"] == "all" else f"{r['split']} classes"
    if len(r["class_names"]) <= SHOWN_CLASSES:
        return f"{part} from {r['split_source']}: {', '.join(r['class_names'])}"
    return f"{len(r['class_names'])} {part} from {r['split_source']} (--json lists them)"


def _episodes_model(r: dict) -> str:
    """What the episodes measured: the meta-trained method, the trained encoder of a model folder, or none."""
    if r["method"]:
        return r["method"]
    return f"encoder of {r['model']}: {r['trained']}" if r.get("trained") else "no meta-training"


def _no_such_option(exc) -> str:
    """click's message, with suggestions judged on the names alone: with the dashes counted,
    --bogus 'resembles' --out and --abstain on fit --data."""
    from quickadapt.registry import close_names

    names = {p.lstrip("-"): p for p in exc.possibilities or ()}
    close = close_names(exc.option_name.lstrip("-"), names)
    return f"No such option: {exc.option_name}" + (f" (did you mean {', '.join(names[c] for c in close)}?)" if close else "")


def _exit_before_command(message: str, hint: str = "") -> None:
    """Bad input found before a command runs (outside `command`'s handling): one line on stderr,
    `{"error": ...}` on stdout with --json, exit code 2."""
    print(f"error: {message}{hint}", file=sys.stderr)
    if "--json" in sys.argv[1:] and _first_process():
        print(json.dumps({"error": message}))
    sys.exit(2)


def main() -> None:
    """Run the CLI. Usage mistakes (an unknown option, a missing value, a stray argument) are bad
    input like any other: one line on stderr (and `{"error": ...}` with --json), exit code 2,
    rather than click's boxed usage text."""
    try:  # recent typer vendors click as typer._click; its exceptions are not click's
        from typer._click import exceptions as click_errors
    except ImportError:
        from click import exceptions as click_errors

    try:  # before torch loads: from a deleted folder it dies in MKL with exit code 2 and no word of why
        os.getcwd()
    except FileNotFoundError:
        _exit_before_command("the current folder no longer exists (deleted or moved); cd to one that does")
    from quickadapt.allocator import keep_freed_memory

    keep_freed_memory()  # training and embedding reuse freed buffers (quickadapt/allocator.py)
    try:
        code = app(prog_name="quickadapt", standalone_mode=False)
    except click_errors.NoArgsIsHelpError as exc:  # a bare `quickadapt`: the help is the answer
        print(exc.format_message())
        sys.exit(exc.exit_code)
    except click_errors.UsageError as exc:
        message = exc.format_message().splitlines()[0]
        if isinstance(exc, click_errors.NoSuchOption):
            message = _no_such_option(exc)
        if "unexpected extra argument" in message and "=" in message:
            message += "; give each setting its own --set, e.g. --set a=1 --set b=2"
        where = exc.ctx.command_path if exc.ctx else "quickadapt"
        _exit_before_command(message, f" (see '{where} --help')")
    except typer.Abort:
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
