"""Latency of `quickadapt serve` over real HTTP: creating a task of 15 CLINC150 intents x 5
utterances with minilm (the probe on frozen embeddings), re-creating it, adding examples, and
predicting one new utterance a call, one repeated utterance a call and 50 new ones in one call.

The server is the real command (`quickadapt serve --port 0`), started with an empty embedding
cache in a temporary folder (QUICKADAPT_CACHE), so the first task pays for building minilm and
embedding every example; "new" texts are test utterances the cache has not seen, "repeated" the
same text again. Times are the client's wall time per request (urllib, keep-alive off) and the
service's own `adapt_ms` / `predict_ms`; medians over `--repeats` calls.

    OMP_NUM_THREADS=1 .venv/bin/python bench/serve_latency.py [--repeats 20]

Results: bench/results/serve_latency.json (+ .md)."""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def call(url: str, body: dict | None = None, method: str | None = None) -> tuple[float, dict]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=600) as response:
        answer = json.loads(response.read())
    return (time.perf_counter() - started) * 1000, answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from quickadapt.data import load_dataset

    train, test = load_dataset("builtin:clinc150-train"), load_dataset("builtin:clinc150-test")
    intents = sorted(set(train.labels.tolist()))[:15]
    others = sorted(set(train.labels.tolist()))[15:30]
    examples = [{"text": train.inputs[i], "label": c} for c in intents for i in np.flatnonzero(train.labels == c)[:5]]
    more = [{"text": train.inputs[i], "label": c} for c in intents for i in np.flatnonzero(train.labels == c)[5:6]]
    other_examples = [{"text": train.inputs[i], "label": c}
                      for c in others for i in np.flatnonzero(train.labels == c)[:5]]
    new_texts = [test.inputs[i] for i in np.flatnonzero(np.isin(test.labels, intents))]
    truth = [test.labels[i] for i in np.flatnonzero(np.isin(test.labels, intents))]

    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, QUICKADAPT_CACHE=tmp, PYTHONPATH=str(ROOT / "src"))
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "quickadapt", "serve", "--port", "0", "--quiet"],
                                stderr=subprocess.PIPE, text=True, env=env)
        try:
            line = proc.stderr.readline()
            port = re.search(r":(\d+) ", line).group(1)
            url = f"http://127.0.0.1:{port}"
            rows["start_to_listening_ms"] = round((time.perf_counter() - started) * 1000, 1)

            def create(name, exs):
                wall, answer = call(url + "/v1/tasks", {"name": name, "examples": exs})
                return {"wall_ms": round(wall, 1), "adapt_ms": answer["adapt_ms"]}, answer["task_id"]

            rows["create_first (builds minilm, embeds 75 texts)"], tid = create("first", examples)
            rows["create_other_15_intents (new texts)"], _ = create("other", other_examples)
            rows["create_same_again (texts cached)"], tid2 = create("again", examples)
            wall, answer = call(url + f"/v1/tasks/{tid2}/examples", {"examples": more})
            rows["add_15_examples (re-adapt on 90)"] = {"wall_ms": round(wall, 1), "adapt_ms": answer["adapt_ms"]}

            def predict(inputs_list):
                walls, server = [], []
                for inputs in inputs_list:
                    wall, answer = call(url + f"/v1/tasks/{tid}/predict", {"inputs": inputs})
                    walls.append(wall)
                    server.append(answer["predict_ms"])
                return {"wall_ms_median": round(statistics.median(walls), 1),
                        "predict_ms_median": round(statistics.median(server), 1), "calls": len(walls)}

            n = args.repeats
            rows["predict_1_new_text"] = predict([[t] for t in new_texts[:n]])
            rows["predict_1_repeated_text"] = predict([[new_texts[0]]] * n)
            batches = [new_texts[n + 50 * i: n + 50 * (i + 1)] for i in range(3)]
            rows["predict_50_new_texts"] = predict(batches)
            _, answer = call(url + f"/v1/tasks/{tid}/predict", {"inputs": new_texts})
            rows["accuracy_on_test"] = {"n": len(truth), "accuracy": round(float(np.mean(
                [p["label"] == c for p, c in zip(answer["predictions"], truth)])), 4)}
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    result = {"command": "OMP_NUM_THREADS=1 .venv/bin/python bench/serve_latency.py --repeats " + str(args.repeats),
              "threads": os.environ.get("OMP_NUM_THREADS"), "machine": machine(), "rows": rows}
    (RESULTS / "serve_latency.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = ["# `quickadapt serve` latency (bench/serve_latency.py)", "",
             "15 CLINC150 intents x 5 utterances, minilm probe, the real command on 127.0.0.1, an empty cache at "
             "start; client wall time per request and the service's own figure.",
             f"Command: `{result['command']}`; machine: {result['machine']}", "",
             "| request | client ms | service ms |", "|---|---|---|"]
    for name, row in rows.items():
        if not isinstance(row, dict):
            continue
        if "adapt_ms" in row:
            lines.append(f"| {name} | {row['wall_ms']} | adapt_ms {row['adapt_ms']} |")
        elif "wall_ms_median" in row:
            lines.append(f"| {name} (median of {row['calls']}) | {row['wall_ms_median']} | "
                         f"predict_ms {row['predict_ms_median']} |")
    lines += ["", f"Start to listening: {rows['start_to_listening_ms']} ms. Accuracy on the intents' "
              f"{rows['accuracy_on_test']['n']} test utterances: {rows['accuracy_on_test']['accuracy']:.1%}."]
    (RESULTS / "serve_latency.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
