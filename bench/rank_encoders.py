"""Do transferability scores rank encoders as their probe accuracy on held-out data does?

For each real task, K labelled examples per class (K nested: the 5 are among the 20), each
candidate encoder is scored on them by `quickadapt.select.rank` (LogME, H-score, LEEP, NCE) and
adapted with the `probe` strategy on the same examples, then scored on held-out test examples.
Per (task, K, seed): Kendall's tau (scipy, tau-b) between each score and the test accuracy over
the candidates, and what picking the top-scored candidate costs against the best one (points).

Tasks: Fashion-MNIST (10 classes, 50 test images a class), scikit-learn digits (10 classes,
50 a class held out), Omniglot's held-out alphabets (Sanskrit + Tagalog: 20 characters, the
drawers not drawn as test), CLINC150's held-out domains banking and credit_cards (15 intents
each, 30 test utterances an intent). Image candidates: efficientnet-lite0 at 224 and 128 pixels,
conv4 and resnet12 from random weights, conv4 meta-trained on Omniglot's training alphabets
(ProtoNet, 300 s). Text candidates: minilm (3 layers, the default), minilm's last layer only,
minilm reading 8 tokens, and a minilm classifier fine-tuned on CLINC's six training domains
(5 utterances an intent), a quickadapt model folder whose head gives LEEP and NCE.

    QUICKADAPT_FASHION_MNIST=... OMP_NUM_THREADS=1 .venv/bin/python bench/rank_encoders.py [--tasks ...] [--seeds 0,1,2]
    .venv/bin/python bench/rank_encoders.py --report

Resumable (bench/results/rank_encoders.jsonl); --work DIR keeps the two trained candidates
(default /tmp/quickadapt-rank-bench). Results: bench/results/rank_encoders.json (+ .md)."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, ResultStore, mean  # noqa: E402

TASKS = ("fashion-mnist", "digits", "omniglot", "clinc-banking", "clinc-credit_cards")
SHOTS = (5, 20)
OMNIGLOT_SHOTS = (5, 10)  # 20 drawers a character: 10 left to test at K = 10
SCORES = ("logme", "hscore", "leep", "nce")
TEST_PER_CLASS = 50
CLINC_TEST_PER_INTENT = 30
OMNIGLOT_WAYS = 20


def image_candidates(work: Path) -> list:
    return [("efficientnet-lite0", {}), ("efficientnet-lite0", {"size": 128}), ("conv4", {}), ("resnet12", {}),
            (str(work / "conv4-omniglot-protonet"), {})]


def text_candidates(work: Path) -> list:
    return [("minilm", {}), ("minilm", {"layers": 1}), ("minilm", {"max_length": 8}),
            (str(work / "minilm-ft-clinc-train-domains"), {})]


def build_candidates(work: Path, needed: set[str]) -> None:
    """The two trained candidates, once: conv4 meta-trained on Omniglot, minilm fine-tuned on CLINC."""
    work.mkdir(parents=True, exist_ok=True)
    meta = work / "conv4-omniglot-protonet"
    if "image" in needed and not (meta / "manifest.json").is_file():
        subprocess.run([sys.executable, "-m", "quickadapt", "meta-train", "--data", "builtin:omniglot", "--method",
                        "protonet", "--ways", "5", "--shots", "1", "--out", str(meta), "--time-budget", "300",
                        "--force", "--quiet"], check=True)
    ft = work / "minilm-ft-clinc-train-domains"
    if "text" in needed and not (ft / "manifest.json").is_file():
        from quickadapt.adapt import adapt
        from quickadapt.artifact import save_model
        from quickadapt.data import load_dataset
        from quickadapt.data.sampling import sample_per_class

        train = load_dataset("builtin:clinc150-train")
        domains = {"kitchen_and_dining", "home", "auto_and_commute", "travel", "utility", "work"}
        source = sample_per_class(train.subset(np.flatnonzero([g in domains for g in train.groups])), 5, 0)
        model = adapt(source, encoder="minilm", strategy="finetune", cv=0, seed=0, progress=False)
        save_model(model, ft, force=True, seed=0)


def task_data(task: str):
    """(training pool, test set, modality) of a task; the test set is fixed across seeds."""
    from quickadapt.data import load_dataset
    from quickadapt.data.sampling import sample_per_class

    if task == "fashion-mnist":
        return load_dataset("builtin:fashion-mnist-train"), sample_per_class(
            load_dataset("builtin:fashion-mnist-test"), TEST_PER_CLASS, 0), "image"
    if task == "digits":
        data = load_dataset("builtin:digits")
        rng = np.random.default_rng(0)
        held = {int(i) for c in data.classes for i in rng.choice(np.flatnonzero(data.labels == c), TEST_PER_CLASS,
                                                                  replace=False)}
        return (data.subset([i for i in range(len(data)) if i not in held]), data.subset(sorted(held)), "image")
    if task == "omniglot":
        data = load_dataset("builtin:omniglot")
        alphabets = {"Sanskrit", "Tagalog"}  # meta-training's held-out test alphabets (docs/meta.md)
        chars = sorted({c for c, g in zip(data.labels, data.groups) if g in alphabets})
        chosen = set(np.random.default_rng(0).choice(chars, OMNIGLOT_WAYS, replace=False))
        return data.subset(np.flatnonzero([c in chosen for c in data.labels])), None, "image"
    if task.startswith("clinc-"):
        domain = task[len("clinc-"):]
        train, test = load_dataset("builtin:clinc150-train"), load_dataset("builtin:clinc150-test")
        pool = train.subset(np.flatnonzero(train.groups == domain))
        test = test.subset(np.flatnonzero(np.isin(test.labels, pool.classes)))
        return pool, sample_per_class(test, CLINC_TEST_PER_INTENT, 0), "text"
    raise SystemExit(f"unknown task {task!r}; choose from {', '.join(TASKS)}")


def draws(pool, test, shots: tuple[int, ...], seed: int):
    """{K: (train, test)} with the K-subsets nested (the first K of each class's largest draw);
    without a fixed test set (Omniglot), the examples not drawn at the largest K are the test."""
    rng = np.random.default_rng(seed)
    order = {c: rng.permutation(np.flatnonzero(pool.labels == c)) for c in pool.classes}
    top = max(shots)
    out = {}
    for k in shots:
        train = pool.subset(sorted(i for c in pool.classes for i in order[c][:k]))
        held = test if test is not None else pool.subset(sorted(i for c in pool.classes for i in order[c][top:]))
        out[k] = (train, held)
    return out


def run_one(spec: dict, train, test, candidate) -> dict:
    from quickadapt.adapt import adapt
    from quickadapt.select import rank

    started = time.perf_counter()
    ranked = rank(train, [candidate], scores=SCORES, seed=spec["seed"])["candidates"][0]
    score_seconds = time.perf_counter() - started
    model = adapt(train, encoder=candidate[0], encoder_params=candidate[1] or None, strategy="probe", cv=0,
                  seed=spec["seed"], progress=False)
    labels, _ = model.predict(test.inputs)
    return {"scores": ranked["scores"], "leep_source": ranked["leep_source"], "embed_dim": ranked["embed_dim"],
            "score_seconds": round(score_seconds, 2), "n_test": len(test),
            "accuracy": float(np.mean(np.asarray(labels, dtype=object) == test.labels))}


def candidate_name(candidate) -> str:
    name = Path(candidate[0]).name if "/" in candidate[0] else candidate[0]
    return name + "".join(f"[{k}={v}]" for k, v in candidate[1].items())


def summary(store: ResultStore) -> list[dict]:
    """Per (task, K, seed): each score's Kendall tau with the accuracy, and the pick's regret."""
    from scipy.stats import kendalltau

    groups: dict = {}
    for r in store.rows:
        if "error" not in r:
            s = r["spec"]
            groups.setdefault((s["task"], s["k"], s["seed"]), []).append(r)
    out = []
    for (task, k, seed), rows in sorted(groups.items()):
        acc = np.array([r["accuracy"] for r in rows])
        entry = {"task": task, "k": k, "seed": seed, "n_candidates": len(rows),
                 "accuracy": {r["spec"]["candidate"]: round(r["accuracy"], 4) for r in rows},
                 "best": rows[int(acc.argmax())]["spec"]["candidate"], "tau": {}, "regret": {}, "pick": {}}
        for score in SCORES:
            values = [r["scores"].get(score) for r in rows]
            have = [i for i, v in enumerate(values) if v is not None]
            if len(have) < 3:  # NCE: only candidates with a source classifier
                entry["tau"][score] = None
                continue
            v = np.array([values[i] for i in have])
            entry["tau"][score] = float(kendalltau(v, acc[have]).statistic)
            pick = have[int(v.argmax())]
            entry["pick"][score] = rows[pick]["spec"]["candidate"]
            entry["regret"][score] = round(float(acc[have].max() - acc[pick]), 4)
        entry["random_pick_regret"] = round(float(acc.max() - acc.mean()), 4)  # a candidate drawn at random
        out.append(entry)
    return out


def report(store: ResultStore) -> str:
    entries = summary(store)
    (RESULTS / "rank_encoders.json").write_text(json.dumps({"summary": entries, "rows": store.rows}, indent=1) + "\n")
    lines = ["Kendall's tau between each score and the probe's held-out accuracy over the candidates (mean over "
             "seeds, per seed in brackets), and the accuracy lost by taking the score's top candidate instead of the "
             "best (points, mean). NCE needs a source classifier: one candidate a task at most, no tau.", "",
             "| task | K | seeds | candidates | best (mean acc.) | LogME tau | H-score tau | LEEP tau | LogME loss | "
             "H-score loss | LEEP loss | random pick loss |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    by: dict = {}
    for e in entries:
        by.setdefault((e["task"], e["k"]), []).append(e)
    for (task, k), es in sorted(by.items(), key=lambda kv: (TASKS.index(kv[0][0]) if kv[0][0] in TASKS else 99, kv[0][1])):
        accs: dict = {}
        for e in es:
            for c, a in e["accuracy"].items():
                accs.setdefault(c, []).append(a)
        best = max(accs, key=lambda c: mean(accs[c]))
        cells = []
        for score in ("logme", "hscore", "leep"):
            taus = [e["tau"][score] for e in es if e["tau"][score] is not None]
            cells.append(f"{mean(taus):+.2f} ({', '.join(f'{t:+.2f}' for t in taus)})" if taus else "n/a")
        for score in ("logme", "hscore", "leep"):
            regrets = [e["regret"][score] for e in es if score in e["regret"]]
            cells.append(f"{100 * mean(regrets):.1f}" if regrets else "n/a")
        cells.append(f"{100 * mean([e['random_pick_regret'] for e in es]):.1f}")
        lines.append(f"| {task} | {k} | {len(es)} | {es[0]['n_candidates']} | {best} ({mean(accs[best]):.1%}) | "
                     + " | ".join(cells) + " |")
    for k in sorted({e["k"] for e in entries}):
        es = [e for e in entries if e["k"] == k]
        cells = []
        for score in ("logme", "hscore", "leep"):
            taus = [e["tau"][score] for e in es if e["tau"][score] is not None]
            cells.append(f"{mean(taus):+.2f}" if taus else "n/a")
        cells += [f"{100 * mean([e['regret'][s] for e in es if s in e['regret']]):.1f}" for s in ("logme", "hscore", "leep")]
        cells.append(f"{100 * mean([e['random_pick_regret'] for e in es]):.1f}")
        lines.append(f"| all tasks | {k} | {len(es)} runs | | | " + " | ".join(cells) + " |")
    lines += ["", "Accuracy (mean over seeds) and LogME (mean) of each candidate:", "",
              "| task | K | candidate | accuracy | LogME | H-score | LEEP (source) |", "|---|---|---|---|---|---|---|"]
    rows_by: dict = {}
    for r in store.rows:
        if "error" not in r:
            s = r["spec"]
            rows_by.setdefault((s["task"], s["k"], s["candidate"]), []).append(r)
    for (task, k, cand), rs in sorted(rows_by.items(), key=lambda kv: (TASKS.index(kv[0][0]) if kv[0][0] in TASKS else 99,
                                                                        kv[0][1], -mean([r["accuracy"] for r in kv[1]]))):
        def m(score):
            values = [r["scores"][score] for r in rs if r["scores"].get(score) is not None]
            return f"{mean(values):.3f}" if values else "-"
        lines.append(f"| {task} | {k} | {cand} | {mean([r['accuracy'] for r in rs]):.1%} | {m('logme')} | {m('hscore')} | "
                     f"{m('leep')} ({rs[0]['leep_source']}) |")
    text = "\n".join(lines) + "\n"
    (RESULTS / "rank_encoders.md").write_text(text)
    return text


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--work", default="/tmp/quickadapt-rank-bench")
    ap.add_argument("--report", action="store_true")
    args = ap.parse_args()
    store = ResultStore("rank_encoders")
    if not args.report:
        from quickadapt.progress import set_quiet

        set_quiet(True)
        work = Path(args.work)
        tasks = args.tasks.split(",")
        build_candidates(work, {"text" if t.startswith("clinc-") else "image" for t in tasks})
        for task in tasks:
            pool, test, modality = task_data(task)
            candidates = image_candidates(work) if modality == "image" else text_candidates(work)
            for seed in map(int, args.seeds.split(",")):
                for k, (train, held) in draws(pool, test, OMNIGLOT_SHOTS if task == "omniglot" else SHOTS, seed).items():
                    for candidate in candidates:
                        spec = {"task": task, "k": k, "seed": seed, "candidate": candidate_name(candidate)}
                        if store.done(spec):
                            continue
                        started = time.perf_counter()
                        result = run_one(spec, train, held, candidate)
                        result["wall_seconds"] = round(time.perf_counter() - started, 2)
                        store.add(spec, result)
                        print(f"{task} K={k} seed {seed} {spec['candidate']}: accuracy {result['accuracy']:.1%}, "
                              f"logme {result['scores']['logme']:.3f} ({result['wall_seconds']} s)", file=sys.stderr,
                              flush=True)
    print(report(store))


if __name__ == "__main__":
    main()
