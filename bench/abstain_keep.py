"""How many new in-scope inputs keep their answer at the calibrated abstain threshold, which
cross-validation sets to keep 90 % of the user's own examples (IN_SCOPE_KEEP): CLINC150, the
probe with library defaults (3 folds) on random K-shot subsets of the training split, every
in-scope test utterance (4,500) scored. The folds' models train on 2/3 of the examples and are
less sure than the final model, so at few shots more than 90 % are kept.

    OMP_NUM_THREADS=1 .venv/bin/python bench/abstain_keep.py [--shots 2,5,10] [--seeds 0,1,2]

The default 9 fits take 36 s with MiniLM's features cached; one line per fit, then each K's mean,
printed and written to bench/results/abstain_keep.md."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine  # noqa: E402


def main() -> None:
    import numpy as np

    from quickadapt.adapt import adapt
    from quickadapt.data import load_dataset
    from quickadapt.data.sampling import sample_per_class

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shots", default="2,5,10")
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()
    train, test = load_dataset("builtin:clinc150-train"), load_dataset("builtin:clinc150-test")
    test = test.subset(np.flatnonzero(test.labels != "oos"))
    lines = []

    def say(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    for k in map(int, args.shots.split(",")):
        thresholds, kept = [], []
        for seed in map(int, args.seeds.split(",")):
            model = adapt(sample_per_class(train, k, seed), encoder="minilm", strategy="probe", seed=seed, progress=False)
            thresholds.append(model.threshold)
            kept.append(float(np.mean(model.predict_proba(test.inputs).max(1) >= model.threshold)))  # answered at >=
            say(f"K={k} seed={seed}: threshold {thresholds[-1]:.3f}, kept {kept[-1]:.1%} of {len(test)}")
        say(f"K={k} mean: threshold {np.mean(thresholds):.3f}, kept {np.mean(kept):.1%}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "abstain_keep.md").write_text(
        "# In-scope answers kept at the calibrated abstain threshold (bench/abstain_keep.py)\n\n"
        f"CLINC150, probe, library defaults (3 folds), random K-shot subsets of train, all {len(test)} in-scope "
        f"test utterances scored; the threshold is calibrated to keep 90 % of the examples out of fold.\n"
        f"Command: `OMP_NUM_THREADS=1 .venv/bin/python bench/abstain_keep.py --shots {args.shots} --seeds {args.seeds}`; "
        f"machine: {machine()}\n\n```\n" + "\n".join(lines) + "\n```\n")


if __name__ == "__main__":
    main()
