"""Shared benchmark plumbing: one subprocess per fit (so wall time and peak memory are the
fit's own), results appended to a JSON-lines file so an interrupted run resumes where it stopped."""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


class ResultStore:
    """Rows keyed by their run settings; `done(key)` lets a rerun skip finished runs."""

    def __init__(self, name: str):
        RESULTS.mkdir(parents=True, exist_ok=True)
        self.path = RESULTS / f"{name}.jsonl"
        self.rows = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()] if self.path.exists() else []

    @staticmethod
    def key(spec: dict) -> str:
        return json.dumps(spec, sort_keys=True)

    def done(self, spec: dict) -> bool:
        k = self.key(spec)
        return any(self.key(r["spec"]) == k for r in self.rows)

    def add(self, spec: dict, result: dict) -> None:
        row = {"spec": spec, **result}
        self.rows.append(row)
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")


def run_worker(script: str, spec: dict, timeout: float = 3600) -> dict:
    """Run `script --worker SPEC` in a fresh process (so its peak memory is the fit's own);
    return the JSON result it prints last."""
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    proc = subprocess.run(
        [sys.executable, script, "--worker", json.dumps(spec)],
        capture_output=True, text=True, timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_seconds"] = round(time.perf_counter() - started, 2)
    # how busy the machine was: timings taken beside other jobs overstate a quiet machine's
    result["threads"] = int(os.environ.get("OMP_NUM_THREADS", os.cpu_count()))
    result["load_1min"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    return result


def run_pending(store: ResultStore, script: str, specs) -> None:
    """Run every spec not yet in `store`, one subprocess each, recording as it goes."""
    for spec in specs:
        if store.done(spec):
            continue
        result = run_worker(script, spec)
        store.add(spec, result)
        print(json.dumps({"spec": spec, **result}), flush=True)


def cases_main(name: str, axes: dict[str, str], default_seeds: str, run_one, said, report,
               description: str | None = None) -> None:
    """The command line of a benchmark that runs in-process: an option per axis of its cases,
    `--AXISs A,B` (`--cases A,B`; `--shifts A --methods B,C`), and `--seeds 0,1` runs each (value
    of every axis, seed) not yet in bench/results/NAME.jsonl with `run_one(*values, seed)`,
    recording its wall time and printing `said(result)` to stderr, then `report()`; `--report`
    only reports."""
    import argparse
    import itertools
    import sys
    import time

    ap = argparse.ArgumentParser(description=description)
    for axis, default in axes.items():
        ap.add_argument(f"--{axis}s", default=default)
    ap.add_argument("--seeds", default=default_seeds)
    ap.add_argument("--report", action="store_true")
    args = ap.parse_args()
    if not args.report:
        from quickadapt.progress import set_quiet

        set_quiet(True)
        store = ResultStore(name)
        chosen = [getattr(args, f"{axis}s").split(",") for axis in axes]
        for *values, seed in itertools.product(*chosen, map(int, args.seeds.split(","))):
            spec = {**dict(zip(axes, values)), "seed": seed}
            if store.done(spec):
                continue
            started = time.perf_counter()
            result = run_one(*values, seed)
            result["wall_seconds"] = round(time.perf_counter() - started, 2)
            store.add(spec, result)
            print(f"{' '.join(values)} seed {seed}: {said(result)}", file=sys.stderr, flush=True)
    report()


def simple_main(name: str, script: str, worker, specs, report) -> None:
    """The command line of a benchmark without options: `--worker SPEC` runs one spec (in the
    subprocess run_pending starts), `--report` rewrites the table only, and no argument runs
    every spec of `specs` not yet in bench/results/NAME.jsonl, then the report."""
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--worker")
    ap.add_argument("--report", action="store_true")
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    store = ResultStore(name)
    if not args.report:
        run_pending(store, script, specs)
    print(report(store))


def seed_rows(store: ResultStore, keys: tuple[str, ...]) -> list[tuple[tuple, list[dict]]]:
    """The store's rows without errors grouped by the spec `keys` (sorted), each group's rows by seed."""
    groups: dict = {}
    for r in store.rows:
        if "error" not in r:
            groups.setdefault(tuple(r["spec"][k] for k in keys), []).append(r)
    return [(key, sorted(rows, key=lambda r: r["spec"]["seed"])) for key, rows in sorted(groups.items())]


def per_seed(rows: list[dict], field: str = "accuracy") -> str:
    """'mean | a, b, c' of a field over seed rows, as percentages: two table cells."""
    return f"{mean([r[field] for r in rows]):.1%} | {', '.join(format(r[field], '.1%') for r in rows)}"


def peak_mb() -> float:
    """This process's peak resident memory so far (Linux reports ru_maxrss in KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def machine() -> dict:
    import platform

    import torch

    return {"cpu_count": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "python": platform.python_version()}
