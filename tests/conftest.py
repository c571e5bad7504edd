import os

import pytest
import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    # one torch thread per test worker: two workers with two threads each on two cores
    # oversubscribe and run slower than one thread each
    torch.set_num_threads(1)


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Keep the embedding and weight caches inside the test run."""
    os.environ["QUICKADAPT_CACHE"] = str(tmp_path_factory.mktemp("qa-cache"))
    yield


@pytest.fixture(autouse=True)
def _not_quiet():
    """Every test starts with logging on: a CLI test run in-process with --quiet turns it off
    for the rest of its process (a real CLI process runs one command)."""
    from quickadapt.progress import set_quiet

    set_quiet(False)


@pytest.fixture(scope="session")
def clinc_small(tmp_path_factory):
    """Real CLINC150 data, 6 intents: 6 training utterances each (csv) and their 30 test utterances."""
    import csv

    import numpy as np

    from quickadapt.data import load_dataset

    intents = ["balance", "book_flight", "weather", "alarm", "translate", "pin_change"]
    folder = tmp_path_factory.mktemp("clinc")
    train = load_dataset("builtin:clinc150-train")
    test = load_dataset("builtin:clinc150-test")
    paths = {}
    for name, ds, per in (("train", train, 6), ("test", test, 30)):
        rows = []
        for intent in intents:
            rows += [(ds.inputs[i], intent) for i in np.flatnonzero(ds.labels == intent)[:per]]
        path = folder / f"{name}.csv"
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["text", "label"])
            w.writerows(rows)
        paths[name] = str(path)
    return paths
