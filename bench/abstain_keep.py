"""How many new in-scope inputs keep their answer at the calibrated abstain threshold, which
cross-validation sets to keep 90 % of the user's own examples (IN_SCOPE_KEEP): CLINC150, the
probe with library defaults (3 folds) on random K-shot subsets of the training split, every
in-scope test utterance (4,500) scored. The folds' models train on 2/3 of the examples and are
less sure than the final model, so at few shots more than 90 % are kept.

    OMP_NUM_THREADS=1 .venv/bin/python bench/abstain_keep.py [--shots 2,5,10] [--seeds 0,1,2]

The default 9 fits take 36 s with MiniLM's features cached; one line per fit, then each K's mean."""
from __future__ import annotations

import argparse


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
    for k in map(int, args.shots.split(",")):
        thresholds, kept = [], []
        for seed in map(int, args.seeds.split(",")):
            model = adapt(sample_per_class(train, k, seed), encoder="minilm", strategy="probe", seed=seed, progress=False)
            thresholds.append(model.threshold)
            kept.append(float(np.mean(model.predict_proba(test.inputs).max(1) >= model.threshold)))  # answered at >=
            print(f"K={k} seed={seed}: threshold {thresholds[-1]:.3f}, kept {kept[-1]:.1%} of {len(test)}", flush=True)
        print(f"K={k} mean: threshold {np.mean(thresholds):.3f}, kept {np.mean(kept):.1%}", flush=True)


if __name__ == "__main__":
    main()
