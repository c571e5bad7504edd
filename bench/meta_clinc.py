"""Pretrain, meta-train, fine-tune: what each stage adds (issue 7, items 3 and 4).

Part `clinc` (text): CLINC150 split by domain: meta-train on kitchen_and_dining, home,
auto_and_commute, travel, utility and work (90 intents), validate on small_talk and meta (early
stopping), test on banking and credit_cards (30 intents, their 30 test utterances each).
5-way 1-shot and 5-way 5-shot, 15 queries per class, 600 seeded episodes (200 for the slow
fine-tuning rows, --finetune-episodes), mean and 95% CI:
frozen MiniLM prototypes (no meta-training) against MiniLM meta-trained with ProtoNet for a time
budget, each adapted to an episode by prototypes or by test-time fine-tuning.

Part `omniglot` (images, P>M>F on conv4), 5-way 1-shot on the held-out alphabets (Sanskrit,
Tagalog): conv4 from random init with no training; after supervised pretraining only; after
meta-training only; after pretraining then meta-training; each by prototypes (or the meta-trained
method, here the same) and with test-time fine-tuning.

    .venv/bin/python bench/meta_clinc.py                      # both parts (~2-3 h on 2 cores)
    .venv/bin/python bench/meta_clinc.py --parts omniglot --budget 600
    .venv/bin/python bench/meta_clinc.py --report             # rewrite the tables only

Meta-trained models go to --work (default /tmp/quickadapt-bench/meta_clinc; a text model with
its checkpoint is about 430 MB); a row whose model folder is gone is trained again. Results:
bench/results/meta_clinc.jsonl (+ .md). Every setting not named here is the library default."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, ResultStore, machine, peak_mb, run_worker  # noqa: E402

WAYS = 5
QUERIES = 15
TRAIN_QUERIES = 5


def model_dir(work: str, spec: dict) -> Path:
    if spec["part"] == "clinc":
        return Path(work) / f"clinc-protonet-{WAYS}w{spec['shots']}s-b{spec['budget']:g}-seed{spec['seed']}"
    return Path(work) / f"omniglot-protonet-pre{spec['pretrain_steps']}-b{spec['budget']:g}-seed{spec['seed']}"


def train_worker(spec: dict) -> dict:
    from quickadapt.meta.run import run_meta_train

    settings = {"validate_every": spec["validate_every"]}
    if spec["part"] == "clinc":  # starts from minilm, no rotations (the text defaults)
        data, meta_batch = "builtin:clinc150-train", spec["meta_batch"]
    else:  # conv4 from random init, rotations as extra classes (the image defaults)
        data, meta_batch = "builtin:omniglot", 16
        if spec["pretrain_steps"]:
            settings["pretrain_steps"] = spec["pretrain_steps"]
    r = run_meta_train(data, method="protonet", n_way=WAYS, k_shot=spec["shots"], n_query=TRAIN_QUERIES,
                       out=spec["out"], steps=100000, meta_batch=meta_batch, time_budget=spec["budget"],
                       settings=settings, seed=spec["seed"], force=True, progress=False)
    val = r.get("validation") or {}
    pre = r["start"].get("pretrain") or {}
    return {"steps": r["steps"], "seconds": r["seconds"], "stopped": r["stopped"],
            "best_step": val.get("best_step"), "best_val_accuracy": val.get("best_accuracy"),
            "val_skipped": val.get("skipped"), "pretrain_steps": pre.get("steps"),
            "pretrain_seconds": pre.get("seconds"), "pretrain_running_accuracy": pre.get("running_accuracy"),
            "peak_mb": peak_mb()}


def eval_worker(spec: dict) -> dict:
    import time

    from quickadapt.meta.run import run_episodes

    data = "builtin:clinc150-test" if spec["part"] == "clinc" else "builtin:omniglot"
    settings = {"finetune_steps": spec["finetune_steps"]} if spec["adapt"] == "finetune" else None
    started = time.perf_counter()
    r = run_episodes(spec["model_path"], data, n_way=WAYS, k_shot=spec["shots"], episodes=spec["episodes"],
                     n_query=QUERIES, adapt=spec["adapt"], seed=spec["seed"], progress=False, settings=settings)
    return {"accuracy": r["accuracy"], "ci95": r["ci95"], "episodes": r["episodes"], "classes": r["classes"],
            "method": r["method"], "eval_seconds": round(time.perf_counter() - started, 2), "peak_mb": peak_mb()}


def worker(spec: dict) -> dict:
    return train_worker(spec) if spec["stage"] == "train" else eval_worker(spec)


def specs(args):
    """(train spec or None, eval spec) pairs in run order; training comes before its evaluations."""
    ft = {"finetune_steps": args.finetune_steps}
    if "clinc" in args.parts:
        for shots in args.shots:
            train = {"part": "clinc", "stage": "train", "shots": shots, "budget": args.budget, "seed": args.seed,
                     "meta_batch": args.meta_batch, "validate_every": args.validate_every}
            frozen = {"part": "clinc", "stage": "eval", "shots": shots, "seed": args.seed, "model": "minilm"}
            meta = {**frozen, "model": "meta", "budget": args.budget, "meta_batch": args.meta_batch,
                    "validate_every": args.validate_every}
            yield None, {**frozen, "adapt": "prototypes", "episodes": args.episodes}
            yield None, {**frozen, "adapt": "finetune", "episodes": args.finetune_episodes, **ft}
            yield train, {**meta, "adapt": "method", "episodes": args.episodes}
            yield train, {**meta, "adapt": "finetune", "episodes": args.finetune_episodes, **ft}
    if "omniglot" in args.parts:
        base = {"part": "omniglot", "stage": "eval", "shots": 1, "seed": args.seed}
        yield None, {**base, "model": "conv4", "adapt": "prototypes", "episodes": args.episodes}
        for pre in (0, args.pretrain_steps):
            train = {"part": "omniglot", "stage": "train", "shots": 1, "budget": args.budget, "seed": args.seed,
                     "pretrain_steps": pre, "validate_every": args.validate_every}
            meta = {**base, "model": "meta", "pretrain_steps": pre, "budget": args.budget,
                    "validate_every": args.validate_every}
            if pre:  # the pretrained body alone, kept by meta-train in OUT/pretrained
                yield train, {**meta, "model": "pretrained", "adapt": "prototypes", "episodes": args.episodes}
                yield train, {**meta, "model": "pretrained", "adapt": "finetune", "episodes": args.episodes, **ft}
            yield train, {**meta, "adapt": "method", "episodes": args.episodes}
            yield train, {**meta, "adapt": "finetune", "episodes": args.episodes, **ft}


def record(store: ResultStore, spec: dict, script: str) -> dict:
    result = run_worker(script, spec, timeout=6 * 3600)
    store.add({k: v for k, v in spec.items() if k not in ("out", "model_path")}, result)
    print(json.dumps({"spec": spec, **result}), flush=True)
    return result


def run_all(store: ResultStore, args) -> None:
    script = str(Path(__file__).resolve())
    for train, ev in specs(args):
        if train is not None:
            out = model_dir(args.work, train)
            # a finished training row counts only while its model is still on disk
            if not (out / "manifest.json").is_file() or not store.done(train):
                if store.done(ev):
                    continue  # evaluated already: no need to train again
                result = record(store, {**train, "out": str(out)}, script)
                if "error" in result:
                    continue
        if store.done(ev):
            continue
        if ev["model"] in ("minilm", "conv4"):
            path = ev["model"]
        else:
            path = str(model_dir(args.work, train) / ("pretrained" if ev["model"] == "pretrained" else ""))
        record(store, {**ev, "model_path": path}, script)


def last_rows(store: ResultStore) -> dict:
    """The latest row per spec (a model trained again replaces its old row)."""
    out = {}
    for r in store.rows:
        out[store.key(r["spec"])] = r
    return out


def cell(r) -> str:
    if r is None:
        return "-"
    if "error" in r:
        return "error"
    return f"{r['accuracy']:.1%} ± {r['ci95']:.1%}"


def report(store: ResultStore, name: str) -> str:
    rows = list(last_rows(store).values())
    evals = [r for r in rows if r["spec"]["stage"] == "eval"]
    trains = [r for r in rows if r["spec"]["stage"] == "train" and "error" not in r]

    def find(**want):
        hits = [r for r in evals if all(r["spec"].get(k) == v for k, v in want.items())]
        return hits[-1] if hits else None

    text = ["# Pretrain, meta-train, fine-tune (bench/meta_clinc.py)", "",
            f"{WAYS}-way episodes, {QUERIES} queries per class, mean and 95% CI over the episodes (600 unless "
            "noted below), seed 0. Fine-tuning (`--adapt finetune`, library defaults): 20 Adam steps per episode "
            "on augmented views of its support set against prototypes recomputed at each step, at a tenth of "
            "the encoder's fine-tuning rate (conv4 1e-4, MiniLM 3e-6), not tuned. Meta-training: ProtoNet, "
            "library defaults, a fixed time budget, the best weights by validation episodes kept (CLINC: "
            "small_talk + meta; Omniglot: Early_Aramaic). Machine: " + json.dumps(machine()), "",
            "## CLINC150 by domain: test on banking + credit_cards (30 intents)", "",
            "| start | meta-training | test-time adaptation | 5-way 1-shot | 5-way 5-shot |", "|---|---|---|---|---|"]
    clinc = [
        ("MiniLM (frozen)", "none", "prototypes", dict(model="minilm", adapt="prototypes")),
        ("MiniLM (frozen)", "none", "fine-tune", dict(model="minilm", adapt="finetune")),
        ("MiniLM", "ProtoNet on 6 domains", "prototypes", dict(model="meta", adapt="method")),
        ("MiniLM", "ProtoNet on 6 domains", "fine-tune", dict(model="meta", adapt="finetune")),
    ]
    for start, meta, adapt, want in clinc:
        text.append(f"| {start} | {meta} | {adapt} | {cell(find(part='clinc', shots=1, **want))} | "
                    f"{cell(find(part='clinc', shots=5, **want))} |")
    text += ["", "## Omniglot, conv4, 5-way 1-shot on Sanskrit + Tagalog (P>M>F)", "",
             "| pretraining | meta-training | test-time adaptation | accuracy |", "|---|---|---|---|"]
    omni = [
        ("none (random init)", "none", "prototypes", dict(model="conv4", adapt="prototypes")),
        ("supervised", "none", "prototypes", dict(model="pretrained", adapt="prototypes")),
        ("supervised", "none", "fine-tune", dict(model="pretrained", adapt="finetune")),
        ("none", "ProtoNet", "prototypes", dict(model="meta", adapt="method", pretrain_steps=0)),
        ("none", "ProtoNet", "fine-tune", dict(model="meta", adapt="finetune", pretrain_steps=0)),
        ("supervised", "ProtoNet", "prototypes", dict(model="meta", adapt="method")),
        ("supervised", "ProtoNet", "fine-tune", dict(model="meta", adapt="finetune")),
    ]
    for pre, meta, adapt, want in omni:
        if want["model"] == "meta" and "pretrain_steps" not in want:
            hit = [r for r in evals if r["spec"]["part"] == "omniglot" and r["spec"]["model"] == "meta"
                   and r["spec"].get("pretrain_steps") and r["spec"]["adapt"] == want["adapt"]]
            r = hit[-1] if hit else None
        else:
            r = find(part="omniglot", **want)
        text.append(f"| {pre} | {meta} | {adapt} | {cell(r)} |")
    text += ["", "## Training runs", "",
             "| part | shots | pretrain steps (s) | meta-train budget s | meta-steps | kept step (validation acc) | peak MB |",
             "|---|---|---|---|---|---|---|"]
    for r in trains:
        s = r["spec"]
        pre = f"{r['pretrain_steps']} ({r['pretrain_seconds']:.0f})" if r.get("pretrain_steps") else "-"
        kept = (f"{r['best_step']} ({r['best_val_accuracy']:.1%})" if r.get("best_step") is not None
                else (r.get("val_skipped") or "-"))
        text.append(f"| {s['part']} | {s['shots']} | {pre} | {s['budget']:g} | {r['steps']} | {kept} | {r['peak_mb']:.0f} |")
    eps = sorted({(r["spec"]["part"], r["spec"]["adapt"], r["episodes"]) for r in evals if "episodes" in r})
    text += ["", "Episodes per row: " + ", ".join(f"{p} {a}: {e}" for p, a, e in eps), ""]
    (RESULTS / f"{name}.md").write_text("\n".join(text))
    return "\n".join(text)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker")
    ap.add_argument("--parts", default="clinc,omniglot")
    ap.add_argument("--shots", default="1,5", help="CLINC shots (Omniglot is 1-shot)")
    ap.add_argument("--budget", type=float, default=600.0, help="meta-training seconds per model")
    ap.add_argument("--meta-batch", type=int, default=4, help="CLINC episodes per meta-step")
    ap.add_argument("--validate-every", type=int, default=50, help="meta-steps between validations (0: none)")
    ap.add_argument("--pretrain-steps", type=int, default=3000, help="Omniglot supervised pretraining steps")
    ap.add_argument("--finetune-steps", type=int, default=20)
    ap.add_argument("--episodes", type=int, default=600)
    # fine-tuning MiniLM per episode costs ~4 s (1-shot) to ~16 s (5-shot) on one busy core:
    # 600 episodes of the 5-shot row alone would take hours
    ap.add_argument("--finetune-episodes", type=int, default=200, help="episodes of the CLINC fine-tuning rows")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default="/tmp/quickadapt-bench/meta_clinc", help="folder for the meta-trained models")
    ap.add_argument("--name", default="meta_clinc", help="results name (bench/results/NAME.jsonl and .md)")
    ap.add_argument("--report", action="store_true")
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    args.parts = args.parts.split(",")
    args.shots = [int(k) for k in args.shots.split(",")]
    store = ResultStore(args.name)
    if not args.report:
        run_all(store, args)
    print(report(store, args.name))


if __name__ == "__main__":
    main()
