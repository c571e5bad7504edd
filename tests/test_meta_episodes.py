"""Episodes on real Omniglot: the fixed class split, seeded sampling, rotations, bad inputs."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from quickadapt.data import Dataset, load_dataset
from quickadapt.data.episodes import (
    OMNIGLOT_SPLIT, EpisodeSampler, default_split, load_episode_data, split_classes, split_classes_randomly,
)
from quickadapt.encoders import create_encoder
from quickadapt.errors import BadInput


@pytest.fixture(scope="module")
def omniglot():
    return load_dataset("builtin:omniglot")


def prep():
    return create_encoder("conv4", channels=8).prepare


def test_fixed_omniglot_split(omniglot):
    split = default_split(omniglot)
    assert (len(split.train), len(split.val), len(split.test)) == (161, 22, 59)
    assert split.groups["test"] == list(OMNIGLOT_SPLIT["test"])
    assert not set(split.train) & set(split.test) and not set(split.val) & set(split.test)
    assert {c.split("/")[0] for c in split.test} == {"Sanskrit", "Tagalog"}


def test_sampler_is_seeded_and_well_formed(omniglot):
    split = default_split(omniglot)
    a = EpisodeSampler(omniglot, 5, 2, 3, seed=7, classes=split.test, prepare=prep())
    b = EpisodeSampler(omniglot, 5, 2, 3, seed=7, classes=split.test, prepare=prep())
    ea, eb = a.sample_batch(2), b.sample_batch(2)
    assert torch.equal(ea.support_x, eb.support_x) and ea.classes == eb.classes
    assert ea.support_x.shape == (2, 10, 1, 28, 28) and ea.query_x.shape == (2, 15, 1, 28, 28)
    assert ea.support_y[0].tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert all(c in split.test for c in ea.classes[0])
    other = EpisodeSampler(omniglot, 5, 2, 3, seed=8, classes=split.test, prepare=prep()).sample()
    assert other.classes != ea.classes[0]


def test_rotations_add_classes(omniglot):
    split = default_split(omniglot)
    s = EpisodeSampler(omniglot, 20, 1, 1, seed=0, rotations=True, classes=split.train, prepare=prep())
    assert len(s.classes) == 4 * 161
    names = [n for _ in range(5) for n in s.sample().classes]
    rotated = [n for n in names if "@" in n]
    assert rotated and all(n.rsplit("@", 1)[1] in ("90", "180", "270") for n in rotated)
    # a rotated class is its base images turned by 90 degrees
    s.x = torch.arange(float(s.x[0].numel())).view(1, 1, 28, 28).repeat(len(s.x), 1, 1, 1)
    s.classes = [(0, 90, False)] * 20
    ep = s.sample()
    assert torch.equal(ep.support_x[0], torch.rot90(s.x[0], 1, dims=(-2, -1)))


def test_mirrors_add_flipped_classes(omniglot):
    split = default_split(omniglot)
    s = EpisodeSampler(omniglot, 20, 1, 1, seed=0, rotations=True, mirrors=True, classes=split.train, prepare=prep())
    assert len(s.classes) == 8 * 161 and len(set(s.classes)) == len(s.classes)
    names = [n for _ in range(5) for n in s.sample().classes]
    assert any(n.endswith("@m") for n in names) and any("@m" in n and n[-1].isdigit() for n in names)
    # without mirrors the classes and the episodes are what they were (old seeds reproduce)
    plain = EpisodeSampler(omniglot, 5, 1, 1, seed=4, rotations=True, classes=split.train, prepare=prep())
    assert all(not m for _, _, m in plain.classes) and not any("@m" in n for n in plain.sample().classes)
    # a mirrored class is its base images flipped left-right, then turned; labelled batches too
    s.x = torch.arange(float(s.x[0].numel())).view(1, 1, 28, 28).repeat(len(s.x), 1, 1, 1)
    s.classes = [(0, 90, True)] * 20
    flipped_turned = torch.rot90(torch.flip(s.x[0], dims=(-1,)), 1, dims=(-2, -1))
    assert torch.equal(s.sample().support_x[0], flipped_turned)
    x, _ = s.labelled_batch(3, torch.Generator().manual_seed(0))
    assert all(torch.equal(xi, flipped_turned) for xi in x)
    texts = Dataset("features", np.zeros((6, 4), np.float32), np.array(list("aabbcc")))
    with pytest.raises(BadInput, match="mirrors"):
        EpisodeSampler(texts, 2, 1, 1, mirrors=True)


def test_bad_inputs(omniglot):
    split = default_split(omniglot)
    with pytest.raises(BadInput, match="22 classes available but 30-way"):
        EpisodeSampler(omniglot, 30, 1, 1, classes=split.val, prepare=prep())
    with pytest.raises(BadInput, match="has 20 examples but 15 shots"):
        EpisodeSampler(omniglot, 5, 15, 10, classes=split.val, prepare=prep())
    with pytest.raises(BadInput, match="no group 'Klingon'"):
        split_classes(omniglot, train_groups=["Klingon"])
    with pytest.raises(BadInput, match="n_way"):
        EpisodeSampler(omniglot, 1, 1, 1, prepare=prep())
    with pytest.raises(BadInput, match="no groups"):
        split_classes(Dataset("features", np.zeros((4, 2)), ["a", "a", "b", "b"]), train_groups=["x"])


def test_nested_folder_and_bad_folders(tmp_path, capsys):
    for group in ("A", "B"):
        for c in ("c1", "c2"):
            d = tmp_path / "root" / group / c
            d.mkdir(parents=True)
            for i in range(3):
                Image.fromarray(np.full((40, 30, 3), 40 * i, np.uint8)).save(d / f"{i}.png")  # RGB, not square
    (tmp_path / "root" / "A" / "c1" / "notes.txt").write_text("x")
    data = load_episode_data(str(tmp_path / "root"))
    assert data.classes == ["A/c1", "A/c2", "B/c1", "B/c2"] and set(data.groups) == {"A", "B"}
    assert "skipped files that are not images: 1 .txt" in capsys.readouterr().err
    s = EpisodeSampler(data, 4, 1, 2, prepare=prep())
    assert s.sample().support_x.shape == (4, 1, 28, 28)  # converted to 28x28 grey
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInput, match="no images found"):
        load_episode_data(str(tmp_path / "empty"))
    bad = tmp_path / "bad" / "c"
    bad.mkdir(parents=True)
    (bad / "x.png").write_bytes(b"not a png")
    with pytest.raises(BadInput, match="not a readable image"):
        prep()(load_episode_data(str(tmp_path / "bad")).inputs)


def test_augment_jitters_each_image_reproducibly_and_keeps_it_recognisable(omniglot):
    split = default_split(omniglot)
    make = lambda augment: EpisodeSampler(omniglot, 5, 1, 3, seed=3, classes=split.train, prepare=prep(),  # noqa: E731
                                          rotations=True, augment=augment).sample()
    plain, a, b, warped = make(False), make(True), make(True), make("elastic")
    assert a.classes == plain.classes == warped.classes and torch.equal(a.support_x, b.support_x)  # same jitter
    x, y = plain.query_x.flatten(1), a.query_x.flatten(1)
    assert not torch.equal(x, y) and x.shape == y.shape
    # a jittered image stays far more like its own original than like the episode's other images
    # (pixel correlation of thin strokes; measured about 0.45 against 0.19), warped ones too
    centred = lambda t: torch.nn.functional.normalize(t - t.mean(1, keepdim=True), dim=1)  # noqa: E731
    for z in (y, warped.query_x.flatten(1)):
        sim = centred(z) @ centred(x).T
        own, other = sim.diag().mean(), (sim.sum() - sim.diag().sum()) / (sim.numel() - len(sim))
        assert own > 1.5 * other, (own, other)
    # the warp comes on top of the same affine change: drawn after it, so augment=true is unchanged
    assert not torch.equal(warped.query_x, a.query_x)
    texts = Dataset("features", np.zeros((6, 4), np.float32), np.array(list("aabbcc")))
    with pytest.raises(BadInput, match="image"):
        EpisodeSampler(texts, 2, 1, 1, augment=True)
    with pytest.raises(BadInput, match="augment must be true, false or elastic"):
        EpisodeSampler(omniglot, 5, 1, 3, classes=split.train, prepare=prep(), augment="strong")


def test_warp_sets_the_elastic_amplitude(omniglot):
    split = default_split(omniglot)
    ramp = torch.arange(28.0).repeat(28, 1).view(1, 1, 28, 28)  # pixel value = column: shows shifts in x

    def make(**kw):
        s = EpisodeSampler(omniglot, 5, 1, 3, seed=3, classes=split.train, prepare=prep(), **kw)
        s.x = ramp.repeat(len(s.x), 1, 1, 1)
        # the support images draw first (the queries' affine numbers come after their warp),
        # and the middle keeps away from the filled border
        return s.sample().support_x[..., 4:-4, 4:-4]

    default, strong = make(augment="elastic"), make(augment="elastic", warp=0.2)
    same = make(augment="elastic", warp=0.08)
    assert torch.equal(default, same)  # 0.08 is the default amplitude
    affine = make(augment=True)
    # the same draws scaled up: 2.5x the amplitude moves pixels about 2.5x as far from the affine-only ones
    ratio = (strong - affine).abs().mean() / (default - affine).abs().mean()
    assert 2.0 < ratio < 3.0, ratio
    for bad in (0, -0.1, 0.9, "big"):
        with pytest.raises(BadInput, match="warp must be"):
            make(augment="elastic", warp=bad)


def test_an_in_memory_dataset_is_refused_by_name():
    from quickadapt.meta import run_episodes, run_meta_train

    digits = load_dataset("builtin:digits")
    for call in (lambda: run_meta_train(digits, method="protonet", n_way=2, k_shot=1, out="never-written"),
                 lambda: run_episodes("conv4", digits, n_way=2, k_shot=1)):
        with pytest.raises(BadInput, match="data must be a folder, a file or builtin:NAME, got a Dataset"):
            call()


def test_wrongly_typed_arguments_are_named_before_any_work(tmp_path):
    """A notebook's n_way="5", episodes="10" or out=None failed in a TypeError deep inside
    (a comparison of a str with a count, pathlib)."""
    from quickadapt import FewShotClassifier
    from quickadapt.meta import run_episodes, run_meta_train

    out = tmp_path / "m"
    for call, message in (
        (lambda: run_meta_train("builtin:omniglot", method="protonet", n_way="5", k_shot=1, out=out),
         "n_way must be an integer >= 2, got '5'"),
        (lambda: run_meta_train("builtin:omniglot", method="protonet", n_way=5, k_shot=1, out=None),
         "out must be a path .*, got NoneType"),
        (lambda: run_episodes("conv4", "builtin:omniglot", n_way=5, k_shot=True),
         "k_shot must be an integer >= 1, got True"),
        (lambda: run_episodes("conv4", "builtin:omniglot", n_way=5, k_shot=1, episodes="10"),
         "episodes must be a whole number >= 1, got '10'"),
        (lambda: run_episodes(None, "builtin:omniglot", n_way=5, k_shot=1), "model must be a path .*, got NoneType"),
        (lambda: FewShotClassifier.load(None), "the model folder must be a path .*, got NoneType"),
    ):
        with pytest.raises(BadInput, match=f"^{message}$"):
            call()
    assert not out.exists()


def alphabet_tree(root, omniglot, alphabets, characters=3, per_class=2, nested=True):
    """The first `characters` characters of each Omniglot alphabet as a user folder:
    root/<alphabet>/<character>/*.png (nested) or root/<alphabet>_<character>/*.png (flat)."""
    for alphabet in alphabets:
        names = sorted({c for c in omniglot.classes if c.startswith(alphabet + "/")})[:characters]
        for c in names:
            folder = root / (c if nested else c.replace("/", "_"))
            folder.mkdir(parents=True)
            for i in np.flatnonzero(omniglot.labels == c)[:per_class]:
                Image.fromarray(omniglot.inputs[i]).save(folder / f"{i}.png")
    return load_episode_data(str(root))


def test_a_folder_of_groups_is_split_by_group(tmp_path, omniglot, capsys):
    alphabets = ("Balinese", "Early_Aramaic", "Greek", "Korean", "Latin")
    data = alphabet_tree(tmp_path / "five", omniglot, alphabets)
    split = default_split(data, seed=0)
    assert split.by == "group" and sorted(sum(split.groups.values(), [])) == list(alphabets)  # each group once
    assert [len(split.groups[p]) for p in ("train", "val", "test")] == [3, 1, 1]  # about 70 / 10 / 20 %
    for part in ("train", "val", "test"):  # every class goes where its alphabet went
        assert split.part(part) == sorted(c for c in data.classes if c.split("/")[0] in split.groups[part])
    assert default_split(data, seed=0) == split  # seeded: the same groups every time
    assert len({tuple(default_split(data, seed=s).groups["test"]) for s in range(6)}) > 1  # the seed picks them
    three = default_split(alphabet_tree(tmp_path / "three", omniglot, alphabets[:3]), seed=4)
    assert sorted(len(g) for g in three.groups.values()) == [1, 1, 1]
    assert "too few to split by" not in capsys.readouterr().err


def test_two_groups_are_too_few_and_a_flat_folder_splits_its_classes(tmp_path, omniglot, capsys):
    two = alphabet_tree(tmp_path / "two", omniglot, ("Greek", "Latin"), characters=5)
    split = default_split(two, seed=1)
    assert split.by == "class" and split == split_classes_randomly(two, seed=1)
    assert "2 groups are too few to split by (train, validation and test need one each): its classes are split " \
        "instead, so classes of one group appear in several parts" in capsys.readouterr().err
    flat = alphabet_tree(tmp_path / "flat", omniglot, ("Balinese", "Greek", "Korean", "Latin"), nested=False)
    assert flat.groups is None
    split = default_split(flat, seed=0)
    assert split.by == "class" and split == split_classes_randomly(flat, seed=0)  # as before groups were split
    assert [len(p) for p in (split.train, split.val, split.test)] == [9, 1, 2]
    assert "too few to split by" not in capsys.readouterr().err


def digit_pngs(folder, n_classes=2, per_class=2):
    """Tiny generated grey PNGs: folder/<digit>/*.png."""
    for c in range(n_classes):
        (folder / str(c)).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(np.full((8, 8), 30 * c + i, np.uint8)).save(folder / str(c) / f"{i}.png")


def test_groups_beyond_the_fixed_split_go_to_training(tmp_path, omniglot, capsys):
    alphabets = sorted(g for part in OMNIGLOT_SPLIT.values() for g in part)
    exact = alphabet_tree(tmp_path / "eight", omniglot, alphabets, characters=1, per_class=1)
    fixed = default_split(exact)
    assert fixed.groups == {k: list(v) for k, v in OMNIGLOT_SPLIT.items()}  # exactly the fixed split, as before
    assert "beyond it" not in capsys.readouterr().err
    plus = alphabet_tree(tmp_path / "nine", omniglot, alphabets, characters=1, per_class=1)
    digit_pngs(tmp_path / "nine" / "Digits", n_classes=3)
    data = load_episode_data(str(tmp_path / "nine"))
    split = default_split(data)
    assert len(data.classes) == 11 and split.part("all") == data.classes  # no class dropped
    assert split.train == sorted(fixed.train + ["Digits/0", "Digits/1", "Digits/2"])
    assert (split.val, split.test) == (fixed.val, fixed.test)  # held-out parts unchanged: figures stay comparable
    assert split.groups["train"] == list(OMNIGLOT_SPLIT["train"]) + ["Digits"]
    assert ("the fixed Omniglot split, with 1 group beyond it (Digits; 3 classes) added to training"
            in capsys.readouterr().err)


def test_a_class_folder_without_images_is_refused_as_fit_refuses_it(tmp_path):
    digit_pngs(tmp_path / "d" / "Digits", n_classes=2)
    digit_pngs(tmp_path / "d" / "Other", n_classes=2)
    (tmp_path / "d" / "Digits" / "__MACOSX").mkdir()  # ignored, as the loader ignores it
    (tmp_path / "d" / "Other" / ".cache").mkdir()
    assert len(load_episode_data(str(tmp_path / "d")).classes) == 4
    (tmp_path / "d" / "Digits" / "7").mkdir()
    (tmp_path / "d" / "Digits" / "7" / "notes.md").write_text("x")
    with pytest.raises(BadInput, match=r"class folder 'Digits/7' has no images \(.*\); add images or remove the folder"):
        load_episode_data(str(tmp_path / "d"))
    (tmp_path / "d" / "Digits" / "7" / "notes.md").unlink()
    (tmp_path / "d" / "Digits" / "7" / "1.txt").write_text("x")
    with pytest.raises(BadInput, match="class folder 'Digits/7' holds .txt files, not images"):
        load_episode_data(str(tmp_path / "d"))


def test_a_loose_class_folder_beside_groups_is_a_group_of_its_own(tmp_path, omniglot, capsys):
    alphabets = ("Balinese", "Early_Aramaic", "Greek", "Korean", "Latin")
    root = tmp_path / "five"
    alphabet_tree(root, omniglot, alphabets)
    digit_pngs(tmp_path / "loose")
    (tmp_path / "loose" / "0").rename(root / "LooseClass")
    data = load_episode_data(str(root))
    assert data.groups is not None and set(data.groups) == {*alphabets, "LooseClass"}
    assert set(data.groups[data.labels == "LooseClass"]) == {"LooseClass"}
    assert ("1 class folder beside the group folders (LooseClass): each counts as a group of its own"
            in capsys.readouterr().err)
    split = default_split(data, seed=0)
    assert split.by == "group"  # still split by group: no held-out alphabet's classes leak into training
    for part in ("train", "val", "test"):
        assert {c.split("/")[0] for c in split.part(part)} == set(split.groups[part])


def test_the_episodes_interval_is_student_s_t_and_none_without_spread():
    """3 CLINC150 2-way 5-shot episodes of 100 % read '100.0% ± 0.0% (95% CI)', a certainty 30
    queries do not give; and 1.96 standard errors over 3 or 5 episodes gave an interval half or
    two thirds as wide as Student's t (4.30 and 2.78 standard errors)."""
    from scipy.stats import t

    from quickadapt.evaluate.episodes import interval_half_width

    assert interval_half_width(np.array([1.0, 1.0, 1.0])) is None
    assert interval_half_width(np.array([0.8])) is None
    a = np.array([0.9, 1.0, 0.8])
    assert interval_half_width(a) == pytest.approx(4.303 * 0.1 / np.sqrt(3), rel=1e-3)
    many = np.random.default_rng(0).random(600)
    # at the usual 600 episodes, the usual 1.96 standard errors, near enough
    assert interval_half_width(many) == pytest.approx(t.ppf(0.975, 599) * many.std(ddof=1) / np.sqrt(600))
    assert abs(interval_half_width(many) / (1.96 * many.std(ddof=1) / np.sqrt(600)) - 1) < 0.003


def test_episodes_that_all_score_alike_say_there_is_no_interval():
    from cli_helpers import run  # as test_meta_cli runs the command line

    r = run("episodes", "minilm", "--data", "builtin:clinc150-train", "--ways", 2, "--shots", 5, "--episodes", 3,
            "--queries", 5, "--json", "--quiet")
    assert r.exit_code == 0, r.stderr
    ep = json.loads(r.stdout, parse_constant=pytest.fail)
    assert ep["accuracy"] == 1.0 and ep["ci95"] is None
    r = run("episodes", "minilm", "--data", "builtin:clinc150-train", "--ways", 2, "--shots", 5, "--episodes", 3,
            "--queries", 5, "--quiet")
    assert "accuracy 100.0% (every episode scored alike: no spread to estimate a confidence interval from) over 3" \
           in r.stdout
