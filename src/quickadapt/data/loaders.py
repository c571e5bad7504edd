"""Read user data files into a `Dataset`: text csv/jsonl, image folders, feature npz/csv.

Every problem a user can fix raises `BadInput` with one line naming the file and the fix.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import zipfile
from pathlib import Path

import numpy as np

from quickadapt.data.columns import ROW_ID_NAMES
from quickadapt.data.dataset import (Dataset, blank, first_half_character, half_character_problem,
                                     label_text)  # label_text: also imported from here
from quickadapt.errors import BadInput, MissingLabel
from quickadapt.progress import log

LABEL_MODES = ("required", "optional", "ignore")
# .jfif, .jpe and .pjpeg are JPEGs under the names some browsers and cameras save them with
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".jfif", ".jpe", ".pjpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff",
              ".avif")  # .avif: Pillow reads it since 11.2; an older one refuses such a file by name, not unsaid
# photo formats PIL does not read, which cameras and phones write (an iPhone's .heic by default):
# skipped as "not images", a folder of them gave no hint that converting them is all it takes
UNREAD_PHOTO_EXTS = (".heic", ".heif", ".dng", ".cr2", ".cr3", ".nef", ".arw", ".orf", ".rw2", ".raf", ".jxl",
                     ".psd", ".svg")
CONVERT_PHOTOS = "a format not read here: convert them to JPEG or PNG"


def unread_photos(skipped: dict) -> str:
    """The UNREAD_PHOTO_EXTS among the skipped files' extensions, as `.heic/.dng`; "" for none."""
    return "/".join(sorted(e for e in skipped if e in UNREAD_PHOTO_EXTS))
# said whether or not the command needs labels: the loader does not know, so both say when they are needed
TEXT_HINT = "text data needs a `text` column (and `label` to fit or evaluate)"
FEATURE_HINT = "feature data needs numeric columns (and `label` to fit or evaluate)"


def as_dataset(data, *, labels: str = "required") -> Dataset | None:
    """`data` itself when it is a Dataset (or None); else what `load_dataset` reads from it (a
    path, `builtin:NAME`), so the Python functions take what the command line takes."""
    if isinstance(data, Dataset) and data.modality == "features" and len(data):
        # as a file's values are checked when read: NaN ended in a torch or scikit-learn traceback
        _check_features(np.asarray(data.inputs), data.name or "data")
    if isinstance(data, Dataset) and data.modality == "text":
        _check_texts(data.inputs, data.name or "data")
    if data is None or isinstance(data, Dataset):
        return data
    if isinstance(data, (str, os.PathLike)):
        return load_dataset(os.fspath(data), labels=labels)
    raise BadInput(f"data must be a Dataset or a path (see quickadapt.data.load_dataset), got {type(data).__name__}")


def load_dataset(spec: str, *, labels: str = "required", groups: bool = False, row_names: bool = False) -> Dataset:
    """Load `spec` (a path, or `builtin:NAME`) as a Dataset.

    labels: "required" (fit: fail without labels), "optional" (evaluate, unlabelled target:
    keep labels when present) or "ignore" (predict: drop them, never validate them).
    groups: read a labelled text file's optional `group` column (jsonl: key) into
    `Dataset.groups`, as meta-train and episodes do to split classes by group; without it the
    column is left out, with a note (the built-in sets carry their groups either way).
    row_names: a feature csv's id column (named id, key, ...) that is not numeric names the rows
    (predict writes it as each row's `input`) instead of being refused as a feature."""
    if labels not in LABEL_MODES:
        raise ValueError(f"labels must be one of {LABEL_MODES}, got {labels!r}")
    spec = str(spec)
    if not spec.strip():  # Path("") is the current folder: it would be read as an image folder
        raise BadInput("the data path is empty; give a file, a folder or builtin:NAME")
    _refuse_streams(spec)
    if spec.startswith("builtin:"):
        from quickadapt.data.builtin import load_builtin

        ds = load_builtin(spec[len("builtin:"):])
    else:
        ds = _load_path(Path(spec).expanduser(), spec, labels, groups, row_names)
    if len(ds) == 0:
        raise BadInput(f"{spec}: no examples found")
    if labels == "ignore" and ds.labels is not None:
        ds = ds.without_labels()
    if labels == "required" and ds.labels is None:
        hint = "put images in class folders root/<label>/" if ds.modality == "image" else "add a `label` column (or `y` array)"
        raise BadInput(f"{spec}: no labels found; {hint}")
    return ds


SAVE_TO_A_FILE = "save the data to a file (.csv, .tsv, .jsonl or .npz) and give its path"
STDIN_NAMES = ("-", "/dev/stdin", "/dev/fd/0", "/proc/self/fd/0")


def _refuse_streams(spec: str) -> None:
    """`-`, /dev/stdin or another pipe or device: a reader needs a file's name for its format, and
    `-` was read as a file named '-' ('no such file or folder')."""
    from quickadapt.output import special_file

    if spec.strip() in STDIN_NAMES:
        raise BadInput(f"{spec}: reading from standard input is not supported; {SAVE_TO_A_FILE}")
    kind = special_file(spec)
    if kind:
        raise BadInput(f"{spec} is a {kind}, not a file: reading from a pipe or device is not supported; {SAVE_TO_A_FILE}")


def _load_path(path: Path, shown: str, labels: str, groups: bool = False, row_names: bool = False) -> Dataset:
    if not path.exists():
        raise BadInput(f"{shown}: no such file or folder")
    if path.is_dir():
        return _load_image_folder(path, shown, labels)
    ext = path.suffix.lower()
    if ext in (".csv", ".tsv"):
        return _load_csv(path, shown, labels, groups, row_names)
    if ext == ".jsonl":
        return _load_jsonl(path, shown, labels, groups)
    if ext == ".npz":
        return _load_npz(path, shown, labels)
    if ext in IMAGE_EXTS:
        raise BadInput(f"{shown}: a single image; pass the folder that holds the images")
    if ext == ".txt":  # Excel's "Text (Tab delimited)" saves one, and predict --out x.txt writes csv
        raise BadInput(f"{shown}: a .txt file is not read, since its name does not say how its cells are separated; "
                       "rename it .tsv if tab-separated (Excel's Text (Tab delimited)) or .csv if comma-separated")
    if ext in WORKBOOK_EXTS:
        raise BadInput(f"{shown}: a spreadsheet workbook is not read; {SAVE_AS_CSV}")
    if ext == ".json":  # predict --out writes it, but a whole-file array is not what the loaders stream
        raise BadInput(f"{shown}: .json is not read; save one object per line as .jsonl "
                       '({"text": ..., "label": ...}), or a csv')
    raise BadInput(
        f"{shown}: unknown file type {ext or '(no extension)'!r}; use .csv, .tsv or .jsonl (text), "
        ".npz or .csv (features), or a folder of images"
    )


# --- text ---------------------------------------------------------------------------------

# how .xlsx, .ods and .numbers (zip) and .xls (OLE) files begin
WORKBOOK_SIGNATURES = (b"PK\x03\x04", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1")
WORKBOOK_EXTS = (".xlsx", ".xlsm", ".xls", ".ods", ".numbers")
SAVE_AS_CSV = ("save it as UTF-8 csv (Excel: Save As, CSV UTF-8; Google Sheets: Download, .csv; LibreOffice: "
               "Save As, Text CSV with character set Unicode (UTF-8))")


def _read_utf8(path: Path, shown: str, newline: str | None = None) -> str:
    """The file's text; `newline=""` keeps its line ends as written (csv: a quoted cell's \\r\\n)."""
    try:
        with open(path, encoding="utf-8-sig", newline=newline) as f:  # -sig: tolerate the BOM Excel writes
            return f.read()
    except UnicodeDecodeError as e:
        with open(path, "rb") as f:
            raw = f.read()
        if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):  # the BOM Excel's "Unicode Text" and Notepad's "Unicode" write
            raise BadInput(f"{shown}: UTF-16 text; save it as UTF-8 (in Excel: CSV UTF-8)") from None
        fix = SAVE_AS_CSV if path.suffix.lower() in (".csv", ".tsv") else "save it as UTF-8"
        if raw.startswith(WORKBOOK_SIGNATURES):  # a workbook renamed .csv read as 'not UTF-8 text (byte 11)'
            raise BadInput(f"{shown}: not text but a zip or Office file, as an .xlsx or .xls workbook is; {fix}") from None
        # a line and the character meant, not a byte offset no spreadsheet shows: Excel's plain
        # "CSV" and older tools write Windows-1252 (é as the one byte e9)
        line = raw.count(b"\n", 0, e.start) + 1
        byte = raw[e.start:e.start + 1]
        raise BadInput(f"{shown}: not UTF-8 text: line {line} holds the byte {byte.hex()} "
                       f"({byte.decode('cp1252', 'replace')!r} in Windows-1252); {fix}") from None


def _no_label(shown: str, line: int, label, field: str) -> MissingLabel:
    said = str(label).strip() if isinstance(label, str) else ""
    why = f"has the label {said!r}, which reads as missing (pandas writes it for no value)" if said else "has no label"
    return MissingLabel(f"{shown}: line {line} {why}; give every row a label (or drop the `label` {field})")


def _missing(value) -> bool:
    """An absent label: None, NaN, or an empty / 'nan' string (what pandas writes for NaN)."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return str(value).strip().lower() in ("", "nan")


def _text_dataset(rows, shown: str, has_label: bool, labels: str, field: str, group_cells=None) -> Dataset:
    """rows: (line number, text, label) tuples. Validates text and, unless ignored, labels.
    `field`: what holds the label, a csv's "column" or a jsonl object's "key". `group_cells`:
    each row's `group` cell, read into the dataset's groups (with labels only: text_groups)."""
    texts, labs = [], []
    keep = has_label and labels != "ignore"
    for line, text, label in rows:
        if text is not None and not isinstance(text, str):  # JSON numbers, lists, objects
            raise BadInput(f"{shown}: line {line} has a `text` that is not a string ({json.dumps(text)[:30]}); "
                           "quote it")
        if text is None or blank(text):
            raise BadInput(f"{shown}: line {line} has empty text; every row needs a non-empty `text`")
        if problem := half_character_problem(text):
            raise BadInput(f"{shown}: line {line} has a `text` holding {problem}")
        texts.append(text)
        if keep:
            if _missing(label):
                raise _no_label(shown, line, label, field)
            if isinstance(label, (list, dict)):
                raise BadInput(f"{shown}: line {line} has a label that is a JSON {type(label).__name__}; "
                               "give one label per example, a string or a number")
            labs.append(label_text(label))
            if problem := half_character_problem(labs[-1]):  # a model folder is written in UTF-8: it could not be saved
                raise BadInput(f"{shown}: line {line} has a label holding {problem}")
    groups = text_groups(rows, group_cells, labs, shown, field) if keep and group_cells is not None else None
    return Dataset("text", texts, np.asarray(labs, dtype=object) if keep else None, name=shown, groups=groups)


def text_groups(rows, cells, labs, shown: str, field: str) -> np.ndarray:
    """The rows' groups from their `group` cells. A blank cell is refused by its line, and a
    class whose rows name two groups by the class: a split by group puts every class of a group
    in one part, which a class in two groups would break."""
    groups, first = [], {}  # first: class -> (its group, the line that gave it)
    for (line, _, _), cell, label in zip(rows, cells, labs):
        if isinstance(cell, (list, dict)):
            raise BadInput(f"{shown}: line {line} has a group that is a JSON {type(cell).__name__}; "
                           "give one group per row, a string or a number")
        if _missing(cell):
            raise BadInput(f"{shown}: line {line} has no group; give every row a group (or drop the `group` {field})")
        group = label_text(cell)
        seen, at = first.setdefault(label, (group, line))
        if seen != group:
            raise BadInput(f"{shown}: class {label!r} is in group {seen!r} (line {at}) and in group {group!r} "
                           f"(line {line}); a class belongs to one group")
        groups.append(group)
    return np.asarray(groups, dtype=object)


def note_unread_groups(shown: str, labels: str) -> None:
    """A `group` column only meta-train and episodes read: said where another command meets it."""
    if labels != "ignore":  # predict ignores the labels as well: nothing there is grouped
        log(f"note: {shown}: the `group` column is read only by meta-train and episodes (to split classes by "
            "group); ignored here")


def _load_jsonl(path: Path, shown: str, labels: str, groups: bool = False) -> Dataset:
    rows, has_label, cells = [], False, []
    # lines end at \n only: splitlines() also breaks at U+2028, U+2029 and U+0085, which
    # json.dumps(ensure_ascii=False) leaves raw inside strings
    for i, raw in enumerate(_read_utf8(path, shown).split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as e:
            raise BadInput(f"{shown}: line {i} is not valid JSON ({e.msg}); each line must be one object") from None
        if not isinstance(obj, dict):
            raise BadInput(f"{shown}: line {i} is not a JSON object; each line must look like {{\"text\": ..., \"label\": ...}}")
        if "text" not in obj:
            raise BadInput(f"{shown}: line {i} has no `text` key (found: {', '.join(obj) or 'none'}); {TEXT_HINT}")
        has_label = has_label or "label" in obj
        rows.append((i, obj["text"], obj.get("label")))
        cells.append(obj.get("group"))
    has_group = any(c is not None for c in cells)
    if has_group and not groups:
        note_unread_groups(shown, labels)
    return _text_dataset(rows, shown, has_label, labels, "key", cells if has_group and groups else None)


def _delimiter(path: Path, content: str) -> str:
    """Tab for .tsv; for .csv a comma, unless the header line has none but a semicolon or tab
    (what spreadsheets write where the comma is the decimal mark)."""
    if path.suffix.lower() == ".tsv":
        return "\t"
    first = next((line for line in content.split("\n") if line.strip()), "")  # the header: rows above it may be empty
    if "," not in first:
        for d in (";", "\t"):
            if d in first:
                return d
    return ","


def _column_index(header: list[str], name: str) -> int | None:
    """Where column `name` is: its exact spelling, else any capitalisation (Text, LABEL)."""
    if name in header:
        return header.index(name)
    folded = [h.lower() for h in header]
    return folded.index(name) if name in folded else None


PANDAS_UNNAMED = re.compile(r"Unnamed: \d+")  # pandas' name, on reading, for a column without one


def _index_columns(header: list[str]) -> int:
    """How many of the first columns are a row index as pandas writes it: without a name, or
    named `Unnamed: 0` (and so on) by a file read and written again; never every column."""
    n = 0
    while n < len(header) - 1 and (header[n] == "" or PANDAS_UNNAMED.fullmatch(header[n])):
        n += 1
    return n


def _load_csv(path: Path, shown: str, labels: str, groups: bool = False, row_names: bool = False) -> Dataset:
    # line ends as written: the csv reader ends rows at \r\n or \n alike, and a quoted cell keeps its
    # own (a Windows or e-mail text's \r\n read as \n did not match its source in predict's output)
    content = _read_utf8(path, shown, newline="")
    if "\r" in content and "\n" not in content:  # lines that end at \r alone (classic Mac): read as \n,
        content = content.replace("\r", "\n")    # as before, for the checks of a quote over rows
    csv.field_size_limit(2**31 - 1)  # the default 128 KiB refuses a long document in one cell
    excel = re.match(r"sep=(.)[ \t]*\r?\n", content)  # Excel's line naming the separator
    lines_before = 1 if excel else 0  # so that every message names the line of the file itself
    if excel:
        content = content[excel.end():]
    delimiter = excel.group(1) if excel else _delimiter(path, content)
    reader = csv.reader(io.StringIO(content, newline=""), delimiter=delimiter)
    try:
        header = _header_row(reader)
    except StopIteration:
        raise BadInput(f"{shown}: empty file; {TEXT_HINT}, or {FEATURE_HINT}") from None
    except csv.Error as e:
        raise BadInput(f"{shown}: not a valid csv ({e})") from None
    header = [h.strip() for h in header]
    for name in ("text", "label") + (("group",) if groups else ()):  # which one would be read is a guess: refuse instead
        at = [str(j + 1) for j, h in enumerate(header) if h == name]  # an exact spelling wins over others
        at = at or [str(j + 1) for j, h in enumerate(header) if h.lower() == name]
        if len(at) > 1:
            raise BadInput(f"{shown}: columns {' and '.join(at)} are both named {name!r}; keep one")
    body = _csv_rows(reader, shown, lines_before)
    if delimiter == "\t" and '"' in content:  # without a quote character both readings agree
        body = _tsv_rows(content, header, body, shown, lines_before)
    over_rows = _quote_over_rows(content, delimiter, body, lines_before)
    if over_rows is not None:
        line, unclosed = over_rows
        if unclosed:
            raise BadInput(f"{shown}: the quote that opens a field on line {line} never closes, so the rest of "
                           "the file reads as one field; close it, or double a quote inside a field (\"\")")
        raise BadInput(f"{shown}: the quote that opens a field on line {line} closes only on a later row, so those "
                       "rows read as one field; close it where the field ends, or double a quote inside a field (\"\")")
    _refuse_rows_above_header(header, body, shown)
    for i, r in body:
        if len(r) > len(header):
            raise BadInput(f"{shown}: line {i} has {len(r)} fields but the header has {len(header)}; quote fields that contain commas")
    index = _index_columns(header)
    if index:
        # pandas' to_csv() writes its row index under an empty name, and a file read back and
        # written again under `Unnamed: 0`: an index, not data (read as a feature, a shuffled
        # iris's old index, sorted by class, took its cross-validated accuracy from 96.0 to 98.7 %)
        what = "the first column" if index == 1 else f"the first {index} columns"
        named = [f"`{h}`" for h in header[:index] if h]
        why = f"named {', '.join(named)} as pandas names a column without a name" if named else "without a name"
        log(f"{shown}: {what}, {why}, {'is' if index == 1 else 'are'} read as a row index and ignored")
        header, body = header[index:], [(i, r[index:]) for i, r in body]
    def cell(r, j):
        return r[j] if j is not None and j < len(r) else None

    jt, jl, jg = _column_index(header, "text"), _column_index(header, "label"), _column_index(header, "group")
    if jt is not None:
        if jl is None and labels == "required":
            raise _no_label_column(shown, header)
        if jg is not None and not groups:
            note_unread_groups(shown, labels)
        rows = [(i, cell(r, jt), cell(r, jl)) for i, r in body]
        group_cells = [cell(r, jg) for _, r in body] if jg is not None and groups else None
        return _text_dataset(rows, shown, jl is not None, labels, "column", group_cells)
    data = _features_csv(header, body, shown, labels, decimal_comma=delimiter == ";", row_names=row_names)
    if data.labels is None and labels == "required":
        raise _no_label_column(shown, header)
    return data


HEADER_SEARCH = 10  # rows below the first read as a header where a sheet's title rows may have pushed it


def _refuse_rows_above_header(header: list[str], body, shown: str) -> None:
    """A sheet with a title above its table (`Intent examples,,` then `text,label`) read the title
    as the header: 'column 2 has no name in the header row; name every feature column', or a
    count of fields, neither of which says that the header is lower down."""
    if any(h.strip().lower() in ("text", "label") for h in header):
        return
    for i, r in body[:HEADER_SEARCH]:
        named = [c.strip() for c in r if c.strip().lower() in ("text", "label")]
        if named:
            raise BadInput(f"{shown}: line {i} holds the column names {' and '.join(f'`{n}`' for n in named)}, but the "
                           f"header is the first row that is not empty ({', '.join(h for h in header if h)}); remove "
                           "the rows above the header")


def _header_row(reader) -> list[str]:
    """The first row with a cell that is not blank: a sheet whose table starts lower down is
    saved with empty rows above it (`,,` or nothing), and the first of them was read as a header
    without names ('line 3 has 2 fields but the header has 0')."""
    while True:
        row = next(reader)
        if any(c.strip() for c in row):
            return row


def _csv_rows(reader, shown: str, lines_before: int = 0) -> list[tuple[int, list[str]]]:
    """(line number, cells) of every data row, numbered by the line of the file it starts on
    (`lines_before`: lines cut off before the reader's text, Excel's `sep=` line). Empty lines are
    skipped, and so are rows of empty cells at the end (a spreadsheet's trailing `,,`); any other
    row counts, an empty text included, so predict never drops an input and its answers stay row
    for row."""
    body, last = [], reader.line_num  # the line the header (or the previous record) ended on
    try:
        for r in reader:
            if r:  # a record starts on the line after the last one ended: a quoted cell may span lines
                body.append((last + 1 + lines_before, r))
            last = reader.line_num
    except csv.Error as e:
        raise BadInput(f"{shown}: not a valid csv at line {reader.line_num + lines_before} ({e})") from None
    while body and not any(c.strip() for c in body[-1][1]):
        body.pop()
    return body


def _tsv_rows(content: str, header: list[str], body, shown: str, lines_before: int) -> list[tuple[int, list[str]]]:
    """The rows of a tab-separated file that holds quote characters, which may be csv quoting
    (pandas, Python's csv module and `predict --out x.tsv` quote a cell holding a tab, a newline
    or a quote) or plain characters of raw text ("Great" movie). `body` is the quoted reading. It
    is kept when it is well-formed csv and no cell holds both a tab and a newline (the mark of a
    quote that ran over row ends, taking the next rows' separators with it); else the raw reading,
    quotes as plain characters, when every row then has the header's cells; else `body` as before,
    unless a quoted cell ran over rows, which is refused: neither reading fits."""
    if _strictly_quoted(content) and not any(_spans_rows(c) for _, r in body for c in r):
        return body
    raw = csv.reader(io.StringIO(content, newline=""), delimiter="\t", quoting=csv.QUOTE_NONE)
    _header_row(raw)
    rows = _csv_rows(raw, shown, lines_before)
    if rows == body:  # the quotes were inside cells only: nothing was read differently
        return body
    if all(len(r) == len(header) for _, r in rows):
        log(f"note: {shown}: quote characters are read as part of the text (read as csv quotes, they do not "
            "open and close whole cells)")
        return rows
    line = next((i for i, r in body if any(_spans_rows(c) for c in r)), None)
    if line is None:  # only malformed quoting, as lax csv reading has always read it
        return body
    raise BadInput(f"{shown}: the quoted cell that starts on line {line} runs over several rows (it holds tabs); "
                   "close its quote, or double a quote inside a cell (\"\")")


def _spans_rows(cell: str) -> bool:
    return "\t" in cell and "\n" in cell


def _strictly_quoted(content: str) -> bool:
    """Whether `content` reads as tab-separated csv without a quoting error: every quoted cell
    closes, and only right before a tab or the line's end."""
    return _strict_quote_error(content, "\t") is None


def _strict_quote_error(content: str, delimiter: str) -> tuple[int, str] | None:
    """(the line the row starts on, the error) where strict csv reading fails, or None. Lax
    reading, the loader's, never fails: it reads a stray quote as opening a cell that runs on to
    the next quote character, however many rows later."""
    reader = csv.reader(io.StringIO(content, newline=""), delimiter=delimiter, strict=True)
    last = 0
    try:
        for _ in reader:
            last = reader.line_num
    except csv.Error as e:
        return last + 1, str(e)
    return None


def _no_label_column(shown: str, header: list[str]) -> BadInput:
    """Labels under another name (intent, category) are the usual cause: name what was found."""
    return BadInput(f"{shown}: no `label` column (found: {', '.join(header)}); name the column that holds the "
                    "labels `label`")


def _quote_over_rows(content: str, delimiter: str, body, lines_before: int) -> tuple[int, bool] | None:
    """(the line, whether it never closes) of a quote that opened a field and took later rows into
    it, or None. Lax reading, the loader's, reads an unclosed quote as one field to the end of the
    file, and a stray quote at a text's start ("i'd like ...) as a field up to the next quote
    character, rows later (8 rows read as 3 examples, with no error); strict reading stops there.
    Either leaves a line break in a field, so files without one are not read again. A quoted field
    over several lines that closes where it ends is well-formed and reads as before; in a .tsv a
    quote that closes rows later is read as a plain character instead (_tsv_rows)."""
    if not any("\n" in c for _, r in body for c in r):
        return None
    error = _strict_quote_error(content, delimiter)
    if error is None:
        return None
    line = error[0] + lines_before
    if "unexpected end of data" in error[1] and any("\n" in c for c in body[-1][1]):
        return line, True
    if delimiter != "\t" and any("\n" in c for i, r in body if i == line for c in r):
        return line, False
    return None


# --- features -----------------------------------------------------------------------------

def _check_features(X: np.ndarray, shown: str) -> np.ndarray:
    # float64, as read: the mlp standardises in float64 before its float32 layers, and a column
    # such as a timestamp (1.7e9 give or take a few) loses its differences in float32
    try:
        X = X.astype(np.float64)
    except (TypeError, ValueError):
        raise BadInput(f"{shown}: feature values must be numbers") from None
    bad = ~np.isfinite(X)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise BadInput(f"{shown}: {int(bad.sum())} non-finite feature value{'s' if bad.sum() > 1 else ''} (NaN, inf or beyond float64), first in data row {r + 1}, column {c + 1}; remove or impute them")
    return X


def _check_texts(texts, shown: str) -> None:
    """As a file's empty text cell is refused: in a Dataset built in Python, None or a number ended
    in an AttributeError deep in hashing, and an empty text was embedded as if it said something."""
    odd = next((i for i, x in enumerate(texts) if not isinstance(x, str)), None)
    if odd is not None:
        raise BadInput(f"{shown}: text inputs must be strings, got {type(texts[odd]).__name__} in data row {odd + 1}")
    empty = next((i for i, x in enumerate(texts) if blank(x)), None)
    if empty is not None:
        raise BadInput(f"{shown}: data row {empty + 1} is empty text; every input needs some text")
    half = first_half_character(texts)
    if half is not None:  # the tokenizer's TypeError, as a file's line would have been
        raise BadInput(f"{shown}: data row {half + 1} has a text holding {half_character_problem(texts[half])}")


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _features_csv(header: list[str], body, shown: str, labels: str, decimal_comma: bool = False,
                  row_names: bool = False) -> Dataset:
    """decimal_comma: a semicolon-separated file, as spreadsheets write where 0,5 means 0.5.
    row_names: a non-numeric id column names the rows instead of being read (load_dataset)."""
    header, body = _without_blank_columns(header, body)
    found = ", ".join(header)
    unnamed = [j for j, h in enumerate(header) if h == "" or PANDAS_UNNAMED.fullmatch(h)]
    if unnamed:  # a text file reads only its text and label columns; here every column counts
        j = unnamed[0]
        said = f" (`{header[j]}`: pandas' name for a column that had none)" if header[j] else ""
        raise BadInput(f"{shown}: column {j + 1} has no name in the header row{said}; name every feature column")
    jl = _column_index(header, "label")
    jid, ids = _id_column(header, body, jl)
    feat = [j for j, h in enumerate(header) if j != jl]
    if jid is not None and row_names and not all(_is_number(v.replace(",", ".") if decimal_comma else v) for v in ids):
        feat.remove(jid)
        log(f"note: {shown}: column `{header[jid]}` is not numeric: it names the rows (each one's `input` in the "
            "predictions) and is not read as a feature")
    if not feat:
        raise BadInput(f"{shown}: no `text` column and no feature columns (found: {found}); {TEXT_HINT}, or {FEATURE_HINT}")
    if all(_is_number(h) for h in header):  # all-number "names": the file has no header row
        raise BadInput(f"{shown}: the first line looks like data, not column names; add a header row (text,label or feature names plus label)")
    X = np.empty((len(body), len(feat)), dtype=np.float64)
    for n, (i, r) in enumerate(body):
        for k, j in enumerate(feat):
            v = r[j].strip() if j < len(r) else ""
            if decimal_comma:
                v = v.replace(",", ".")
            try:
                X[n, k] = float(v)
            except ValueError:
                what = "is empty" if v == "" else f"is not numeric ({v[:30]!r})"
                # predict's output (input,label,score) read back as labelled data: say how
                hint = ("; predict writes its texts as `input`: rename that column `text`"
                        if header[j].lower() == "input" else "")
                raise BadInput(
                    f"{shown}: no `text` column (found: {found}), and read as features, column `{header[j]}` "
                    f"line {i} {what}; {TEXT_HINT}; {FEATURE_HINT}{hint}"
                ) from None
    X = _check_features(X, shown)
    y = None
    if jl is not None and labels != "ignore":
        y = []
        for i, r in body:
            v = r[jl] if jl < len(r) else ""
            if _missing(v):
                raise _no_label(shown, i, v, "column")
            y.append(label_text(v))
        y = np.asarray(y, dtype=object)
    return Dataset("features", X, y, name=shown, columns=[header[j] for j in feat], ids=ids,
                   id_column=None if jid is None else header[jid])


def _without_blank_columns(header: list[str], body) -> tuple[list[str], list]:
    """The columns without a name that hold no value in any row left out: Excel saves a column
    it once formatted as that (`a,b,label,,` and `,,` on every row), nothing a feature can be
    read from, as a spreadsheet's trailing rows of empty cells are not rows (_csv_rows)."""
    blank = {j for j, h in enumerate(header) if (h == "" or PANDAS_UNNAMED.fullmatch(h))
             and not any(j < len(r) and r[j].strip() for _, r in body)}
    if not blank:
        return header, body
    keep = [j for j in range(len(header)) if j not in blank]
    return [header[j] for j in keep], [(i, [r[j] for j in keep if j < len(r)]) for i, r in body]


def _id_column(header: list[str], body, jl: int | None) -> tuple[int | None, list[str] | None]:
    """The first column named as row ids are (id, key, row_id, ...) and its cells as written
    (007 stays 007), which name the rows in predict's output where the model does not read the
    column as a feature: the id that joins the answers back to the rows."""
    jid = next((j for j, h in enumerate(header) if j != jl and h.strip().lower() in ROW_ID_NAMES), None)
    if jid is None:
        return None, None
    return jid, [r[jid].strip() if jid < len(r) else "" for _, r in body]


def _load_npz(path: Path, shown: str, labels: str) -> Dataset:
    if not zipfile.is_zipfile(path):  # np.load would try .npy / pickle formats instead
        raise BadInput(f"{shown}: not a readable .npz file; save it with numpy.savez(path, X=..., y=...)")
    try:
        with np.load(path, allow_pickle=False) as z:  # never unpickle user files
            arrays = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise BadInput(f"{shown}: not a readable .npz file ({e}); save it with numpy.savez(path, X=..., y=...)") from None
    except ValueError:  # object arrays need pickle, which we refuse
        raise BadInput(f"{shown}: holds object arrays; save X as numbers and y as numbers or strings") from None
    if "X" not in arrays:
        raise BadInput(f"{shown}: no array `X` (found: {', '.join(arrays) or 'none'}); save it with numpy.savez(path, X=..., y=...)")
    X = arrays["X"]
    if X.ndim != 2:
        raise BadInput(f"{shown}: `X` must be 2-D (n x d), got shape {X.shape}")
    if not (np.issubdtype(X.dtype, np.number) or X.dtype == bool):
        raise BadInput(f"{shown}: `X` must be numeric, got dtype {X.dtype}")
    X = _check_features(X, shown)
    y = arrays.get("y")
    if y is None or labels == "ignore":
        return Dataset("features", X, None, name=shown)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or len(y) != len(X):
        raise BadInput(f"{shown}: `y` has shape {y.shape} but `X` has {len(X)} rows; y needs one label per row of X")
    if np.issubdtype(y.dtype, np.floating):
        if not np.isfinite(y).all():
            raise BadInput(f"{shown}: `y` has NaN/inf labels (first at row {int(np.argmax(~np.isfinite(y)))}); give every row a label")
        if np.all(y == np.round(y)):
            y = y.astype(np.int64)  # labels 3.0 -> "3"
    if y.dtype.kind == "S":  # bytes (y.astype("S")): b"cat" is the label cat, not "b'cat'"
        try:
            y = np.char.decode(y, "utf-8")
        except UnicodeDecodeError:
            raise BadInput(f"{shown}: `y` holds bytes that are not UTF-8 text; save labels as str or numbers") from None
    y = np.asarray([label_text(v) for v in y.tolist()], dtype=object)  # "1.0" is 1, as in a csv
    empty = np.flatnonzero(y == "")
    if len(empty):
        raise BadInput(f"{shown}: `y` has an empty label at row {int(empty[0])}; give every row a label")
    return Dataset("features", X, y, name=shown)


# --- images -------------------------------------------------------------------------------

def ignored_folder(name: str) -> bool:
    """A folder that is never data: hidden ones, and `__MACOSX`, the resource forks macOS adds
    to the zips it makes (an unzipped folder of photos from a Mac has one beside the classes)."""
    return name.startswith(".") or name == "__MACOSX"


def images_under(folder: Path, skipped: dict | None = None) -> list[Path]:
    """Image files anywhere under `folder`, sorted by relative path; hidden entries and
    `ignored_folder`s skipped.
    Other files are counted by extension into `skipped`. Links to folders are followed, as the
    class folders themselves are (`Path.is_dir`), so that every command reads the same images;
    a folder reached twice (a link back up the tree) is read once."""
    found = []
    for dirpath, _, filenames in walk_once(folder):
        for f in filenames:
            if f.lower().endswith(IMAGE_EXTS) and not f.startswith("."):
                found.append(Path(dirpath, f))
            elif skipped is not None:
                tally_other(skipped, f)
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def tally_other(counts: dict, filename: str) -> None:
    """Count a file that is not an image by its extension (hidden files are not counted)."""
    if not filename.startswith("."):
        ext = Path(filename).suffix.lower() or "(no extension)"
        counts[ext] = counts.get(ext, 0) + 1


def walk_once(root: Path):
    """os.walk following links to folders, each real folder once (a link back up the tree is not
    a loop), hidden and `ignored_folder`s left out: (folder, its sub-folders, its files)."""
    seen = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = [d for d in dirnames if not ignored_folder(d)]
        yield dirpath, dirnames, filenames


def refuse_imageless_class(shown: str, name: str, skipped: dict) -> None:
    """A class folder without images (`skipped`: its other files by extension) is an error, not
    a class that silently vanishes: the user meant something by it."""
    if ".txt" in skipped:  # one text file per example (the aclImdb layout)
        raise BadInput(f"{shown}: class folder {name!r} holds .txt files, not images; text data goes in one "
                       f".csv or .jsonl file: {TEXT_HINT}")
    if photos := unread_photos(skipped):
        raise BadInput(f"{shown}: class folder {name!r} holds {photos} photos, {CONVERT_PHOTOS}")
    exts = "/".join(e[1:] for e in IMAGE_EXTS)
    raise BadInput(f"{shown}: class folder {name!r} has no images ({exts}); add images or remove the folder")


def refuse_imageless_leaves(root: Path, shown: str) -> None:
    """Refuse a folder below `root` with neither sub-folders nor images: in a tree of
    `group/class/` folders every leaf is a class (hidden and `ignored_folder`s aside, as
    images_under skips them)."""
    for dirpath, dirnames, filenames in walk_once(root):
        if dirnames or Path(dirpath) == root or any(
                f.lower().endswith(IMAGE_EXTS) and not f.startswith(".") for f in filenames):
            continue
        here: dict = {}
        for f in filenames:
            tally_other(here, f)
        refuse_imageless_class(shown, Path(dirpath).relative_to(root).as_posix(), here)


def note_skipped(shown: str, skipped: dict) -> None:
    """One log line for files that are not images (photos in a format PIL cannot read, such as
    .heic, would otherwise vanish from the data without a word)."""
    if skipped:
        from quickadapt.progress import log

        kinds = ", ".join(f"{n} {ext}" for ext, n in sorted(skipped.items(), key=lambda kv: (-kv[1], kv[0])))
        photos = unread_photos(skipped)
        log(f"note: {shown}: skipped files that are not images: {kinds}"
            + (f"; the {photos} files are photos in {CONVERT_PHOTOS}" if photos else ""))


def note_several_frames(shown: str, paths) -> None:
    """One log line for image files that hold several frames or pages (an animated GIF, a
    multi-page TIFF): only the first of each is read, and the rest should not vanish unsaid."""
    from quickadapt.data.images import has_several_frames

    n = sum(has_several_frames(p) for p in paths)
    if n:
        log(f"note: {shown}: {n} image{'s have' if n > 1 else ' has'} several frames or pages; "
            f"only the first of each is read")


def check_folder_label(shown: str, name: str) -> None:
    """A class named by its folder must be text: a name in another encoding (from a Windows share
    or an old zip) reads with stand-ins that no manifest or csv can hold (it failed at the end)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise BadInput(f"{shown}: class folder {ascii(name)[1:-1]} has a name that is not UTF-8 text; rename it") from None


def _load_image_folder(root: Path, shown: str, labels: str) -> Dataset:
    exts = "/".join(e[1:] for e in IMAGE_EXTS)
    # Class layout = any visible sub-folder. Predict (labels ignored) takes every image below.
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not ignored_folder(p.name))
    loose = [p for p in root.iterdir() if p.is_file() and not p.name.startswith(".") and p.name.lower().endswith(IMAGE_EXTS)]
    skipped: dict = {}
    if labels == "ignore" or not subdirs:
        paths = images_under(root, skipped)
        if not paths:
            photos = unread_photos(skipped)
            raise BadInput(f"{shown}: no images found (looked for {exts} files)"
                           + (f"; its {photos} files are photos in {CONVERT_PHOTOS}" if photos else ""))
        note_skipped(shown, skipped)
        note_several_frames(shown, paths)
        return Dataset("image", [str(p) for p in paths], None, name=shown)
    if loose:
        raise BadInput(f"{shown}: has images at the top level ({loose[0].name}) and class folders; move every image into root/<label>/")
    paths, labs, nested = [], [], []
    for d in subdirs:
        check_folder_label(shown, d.name)
        here: dict = {}
        found = images_under(d, here)
        if not found:
            refuse_imageless_class(shown, d.name, here)
        for ext, n in here.items():
            skipped[ext] = skipped.get(ext, 0) + n
        paths += [str(p) for p in found]
        labs += [d.name] * len(found)
        nested += [p.parent.relative_to(root) for p in found if p.parent != d][:1]
    note_skipped(shown, skipped)
    note_several_frames(shown, paths)
    if nested:  # group/class/ as meta-train reads it would make many more, smaller classes
        log(f"note: {shown}: class folders hold sub-folders (e.g. {nested[0]}); each top-level folder is one class "
            f"({len(subdirs)} classes), its sub-folders' images included")
    return Dataset("image", paths, np.asarray(labs, dtype=object), name=shown)
