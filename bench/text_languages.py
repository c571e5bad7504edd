"""The no-transfer TF-IDF baseline and a MiniLM probe on short intents in languages other than
English: Chinese, Japanese and Thai (written without spaces between words) and Hindi
(Devanagari, whose vowel signs Python's \\w leaves out). Six intents each (balance, lost card,
transfer, weather, alarm, music), written for this benchmark (bench/data/languages/, 10-14 texts a
class); K examples a class drawn at random, every other text scored, 10 draws.

    OMP_NUM_THREADS=1 .venv/bin/python bench/text_languages.py [--shots 3,5,8] [--seeds 0-9]

MiniLM (all-MiniLM-L6-v2) learned English: most Chinese and Japanese characters are outside its
vocabulary. One line per language and K, printed and written to bench/results/text_languages.md."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine  # noqa: E402

DATA = Path(__file__).resolve().parent / "data" / "languages"
LANGUAGES = {"zh": "Chinese", "ja": "Japanese", "th": "Thai", "hi": "Hindi"}


def main() -> None:
    import numpy as np

    from quickadapt.adapt import adapt
    from quickadapt.data import load_dataset
    from quickadapt.evaluate.baseline import fit_baseline

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shots", default="3,5,8")
    parser.add_argument("--seeds", default="0,1,2,3,4,5,6,7,8,9")
    args = parser.parse_args()
    lines = []

    def say(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    for code, language in LANGUAGES.items():
        data = load_dataset(str(DATA / f"{code}.jsonl"))
        labels = data.labels.astype(str)
        for k in map(int, args.shots.split(",")):
            if k >= min(np.unique(labels, return_counts=True)[1]):
                continue  # leaves a class nothing to score
            scores = {"baseline": [], "minilm probe": []}
            for seed in map(int, args.seeds.split(",")):
                rng = np.random.default_rng(seed)
                train = np.sort(np.concatenate([rng.choice(np.flatnonzero(labels == c), k, replace=False)
                                                for c in np.unique(labels)]))
                test = np.setdiff1d(np.arange(len(labels)), train)
                texts = [data.inputs[i] for i in test]
                baseline, _ = fit_baseline(data.subset(train), seed=seed).predict(texts)
                scores["baseline"].append(np.mean(np.asarray(baseline) == labels[test]))
                probe = adapt(data.subset(train), encoder="minilm", strategy="probe", cv=0, seed=seed, progress=False)
                scores["minilm probe"].append(np.mean(np.asarray(probe.predict(texts)[0]).astype(str) == labels[test]))
            say(f"{language} K={k}: " + ", ".join(f"{name} {np.mean(acc):.1%}" for name, acc in scores.items())
                + f" ({len(test)} texts scored a draw)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "text_languages.md").write_text(
        "# Text in other languages: TF-IDF baseline and MiniLM probe (bench/text_languages.py)\n\n"
        "Six intents a language (bench/data/languages/), K examples a class at random, every other text scored, "
        "mean over the draws.\n"
        f"Command: `OMP_NUM_THREADS=1 .venv/bin/python bench/text_languages.py --shots {args.shots} "
        f"--seeds {args.seeds}`; machine: {machine()}\n\n```\n" + "\n".join(lines) + "\n```\n")


if __name__ == "__main__":
    main()
