"""Latency of the short calls a script makes: `quickadapt --help`, `--version`, `encoders`,
`datasets`, `python -c "import quickadapt"`, and `predict` of one input (a text on a minilm
probe, an image on an efficientnet-lite0 probe), each a fresh process, as a shell loop runs
them once per request. A predict is "warm" when its input's features are cached already (the
same input again) and "cold" when they are not (a new input each time).

Also the embedding cache's lookup after many one-input calls (each call stores its row), in
process, since thousands of CLI calls would take hours.

    .venv/bin/python bench/cli_latency.py [--repeats 5] [--src DIR] [--label NAME]

`--src` times another checkout's src/ (say the code before a change) under the same
interpreter; `--label` names the rows. Every command runs at OMP_NUM_THREADS=1 and at the
default, interleaved (repeat r runs every command once before repeat r+1). Its models, data and
cache live in a temporary folder (QUICKADAPT_CACHE), so the user's cache is not touched.
Results: bench/results/cli_latency.jsonl (+ .md), one row per label, command and threads."""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TRAIN_TEXTS = {
    "weather": ["what's the weather like tomorrow", "will it rain in paris today", "is it going to snow this weekend",
                "how hot will it be on friday"],
    "music": ["play some jazz music", "put on my workout playlist", "skip this song", "turn the volume up on the music"],
    "restaurant": ["book a table for two at 7pm", "find me a good sushi place nearby", "reserve dinner for four tonight",
                   "is the italian place open late"],
    "alarm": ["set an alarm for 6am", "wake me up at seven tomorrow", "cancel my morning alarm",
              "remind me to wake at half past five"],
}


def write_image(path: Path, base: tuple, seed: int) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.array(base) + rng.integers(-40, 40, (64, 64, 3))).clip(0, 255).astype("uint8")).save(path)


def prepare(work: Path, env: dict) -> None:
    """Two probe models and the inputs the warm predicts read (their features then cached)."""
    with open(work / "train.csv", "w") as f:
        f.write("text,label\n" + "".join(f"{t},{label}\n" for label, ts in TRAIN_TEXTS.items() for t in ts))
    for label, base in (("cat", (200, 120, 60)), ("dog", (60, 120, 200))):
        for i in range(4):
            write_image(work / "images" / label / f"{i}.png", base, len(label) * 10 + i)
    (work / "one.csv").write_text("text\nwill it be sunny on monday\n")
    write_image(work / "one_image" / "q.png", (190, 120, 70), 7)
    quickadapt = [sys.executable, "-m", "quickadapt"]
    for args in (["fit", "--data", "train.csv", "--encoder", "minilm", "--strategy", "probe", "--out", "m_text"],
                 ["fit", "--data", "images", "--encoder", "efficientnet-lite0", "--strategy", "probe", "--out", "m_image"],
                 ["predict", "m_text", "--data", "one.csv"], ["predict", "m_image", "--data", "one_image"]):
        subprocess.run(quickadapt + args + ["--quiet"], cwd=work, env=env, check=True, capture_output=True)


def commands(work: Path, tag: str) -> dict[str, list[str]]:
    """Name -> argv; the cold predicts read an input no earlier call stored."""
    (work / f"new{tag}.csv").write_text(f"text\nwill it be sunny on day {tag} of the trip\n")
    write_image(work / f"new_image{tag}" / "q.png", (190, 120, 70), 100 + len(list(work.glob("new_image*"))))
    q = [sys.executable, "-m", "quickadapt"]
    return {
        "import quickadapt": [sys.executable, "-c", "import quickadapt"],
        "--help": q + ["--help"],
        "--version": q + ["--version"],
        "datasets": q + ["datasets"],
        "encoders": q + ["encoders"],
        "predict 1 text, cache warm": q + ["predict", "m_text", "--data", "one.csv", "--quiet"],
        "predict 1 text, cache cold": q + ["predict", "m_text", "--data", f"new{tag}.csv", "--quiet"],
        "predict 1 image, cache warm": q + ["predict", "m_image", "--data", "one_image", "--quiet"],
        "predict 1 image, cache cold": q + ["predict", "m_image", "--data", f"new_image{tag}", "--quiet"],
    }


def lookup_after_calls(src: Path, calls: int) -> dict:
    """Seconds to store `calls` one-row results as predict does, then to look one up."""
    code = f"""
import json, tempfile, time
from pathlib import Path
import numpy as np
from quickadapt.data.dataset import content_key
from quickadapt.encoders.cache import EmbeddingCache
folder = Path(tempfile.mkdtemp())
store, rng = EmbeddingCache(folder), np.random.default_rng(0)
start = time.perf_counter()
for i in range({calls}):
    store.add([content_key(f"request {{i}}", "text")], rng.standard_normal((1, 1152)).astype(np.float32))
stored = time.perf_counter() - start
times = []
for text in ("request 0", "request {calls // 2}", "request {calls - 1}", "a new request"):
    start = time.perf_counter()
    store.read_into([content_key(text, "text")], np.zeros((1, 1152), np.float32))
    times.append(time.perf_counter() - start)
print(json.dumps({{"store_s": round(stored, 3), "lookup_s": [round(t, 4) for t in times],
                  "files": len(list(folder.glob("*.safetensors")))}}))
"""
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--src", default=str(ROOT / "src"))
    ap.add_argument("--label", default="current")
    ap.add_argument("--lookup-calls", type=int, default=3000)
    args = ap.parse_args()
    src = Path(args.src).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base = {**os.environ, "PYTHONPATH": str(src), "QUICKADAPT_CACHE": str(work / "cache")}
        base.pop("QUICKADAPT_NO_CACHE", None)
        prepare(work, base)
        envs = {"1": {**base, "OMP_NUM_THREADS": "1"}, "default": {k: v for k, v in base.items() if k != "OMP_NUM_THREADS"}}
        times: dict[tuple[str, str], list[float]] = {}
        for repeat in range(args.repeats):
            for threads, env in envs.items():
                for name, argv in commands(work, f"{repeat}-{threads}").items():
                    start = time.perf_counter()
                    subprocess.run(argv, cwd=work, env=env, check=True, capture_output=True)
                    times.setdefault((name, threads), []).append(time.perf_counter() - start)
    RESULTS.mkdir(parents=True, exist_ok=True)
    load = round(os.getloadavg()[0], 2)
    rows = [{"label": args.label, "command": name, "threads": threads, "median_s": round(statistics.median(t), 3),
             "min_s": round(min(t), 3), "runs": [round(x, 3) for x in t], "load_1min": load}
            for (name, threads), t in times.items()]
    rows.append({"label": args.label, "command": f"cache lookup after {args.lookup_calls} one-input calls",
                 "threads": "1", **lookup_after_calls(src, args.lookup_calls), "load_1min": load})
    with open(RESULTS / "cli_latency.jsonl", "a") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    report()


def report() -> None:
    rows = [json.loads(line) for line in (RESULTS / "cli_latency.jsonl").read_text().splitlines() if line.strip()]
    lines = ["# CLI latency: one short call per process", "",
             "Median (min) wall seconds of a fresh process, `bench/cli_latency.py`; rows by label (the code timed).", "",
             "| label | command | OMP_NUM_THREADS | median s | min s | runs | load |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        if "median_s" in r:
            lines.append(f"| {r['label']} | {r['command']} | {r['threads']} | {r['median_s']} | {r['min_s']} | "
                         f"{len(r['runs'])} | {r['load_1min']} |")
    lines += ["", "| label | cache | store s | lookup s (first, middle, last, new) | files |", "|---|---|---|---|---|"]
    for r in rows:
        if "lookup_s" in r:
            lines.append(f"| {r['label']} | {r['command']} | {r['store_s']} | {', '.join(map(str, r['lookup_s']))} | {r['files']} |")
    (RESULTS / "cli_latency.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
