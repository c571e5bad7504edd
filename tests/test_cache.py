"""The embedding cache serves only rows it can vouch for: keyed by the weights and everything in
the preprocessing, a damaged row or shard is a miss, and an input given twice is found twice."""
import json
import os
import time

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from quickadapt.data.dataset import content_key
from quickadapt.encoders import create_encoder
from quickadapt.encoders.base import embed
from quickadapt.encoders.cache import EmbeddingCache, cache_dir


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("QUICKADAPT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("QUICKADAPT_NO_CACHE", raising=False)
    return tmp_path / "cache" / "embeddings"


def shards(cache):
    return sorted(cache.rglob("*.safetensors"))


def found_rows(store, rows, encoder) -> list[int]:
    """Positions of `rows` the cache serves, checked against what `embed` computes for them."""
    out = np.full((len(rows), encoder.embed_dim), np.nan, dtype=np.float32)
    found = store.read_into([content_key(r, "features") for r in rows], out)
    assert np.isnan(out[~found]).all()
    assert np.allclose(out[found], embed(encoder, [r for r, hit in zip(rows, found) if hit], cache=False), atol=1e-5)  # batch size moves the last bits
    return np.flatnonzero(found).tolist()


def test_damaged_rows_and_shards_are_misses_and_repeats_are_found(cache):
    encoder = create_encoder("mlp", in_dim=3)
    rows = [np.array([i, 2.0 * i, 1.0], dtype=np.float32) for i in range(4)]
    clean = embed(encoder, rows)
    assert len(shards(cache)) == 1
    again = embed(encoder, rows + rows[:2])  # an input given twice is served from the cache both times
    assert np.array_equal(again[:4], clean) and np.array_equal(again[4:], clean[:2]) and len(shards(cache)) == 1

    shard = shards(cache)[0]
    stored = load_file(str(shard))
    stored["features"][1, 0] = np.nan  # a readable file with a damaged row
    save_file(stored, str(shard))
    wrong_width = {"keys": stored["keys"], "features": np.zeros((4, 7), dtype=np.float32)}
    save_file(wrong_width, str(shard.with_name("0" + shard.name)))  # read first: another encoder's width
    store = EmbeddingCache.for_encoder(encoder)
    assert found_rows(store, rows, encoder) == [0, 2, 3]
    recomputed = embed(encoder, rows)  # the damaged row is computed again (alone: rounding may differ)
    assert np.isfinite(recomputed).all() and np.allclose(recomputed, clean, atol=1e-6)


def test_lookup_reads_on_past_a_shard_that_holds_all_of_its_rows(cache):
    """A shard's own keys once shadowed the keys asked for: a first shard fully wanted ended the
    search, so a large --source was embedded again in every fold."""
    encoder = create_encoder("mlp", in_dim=3)
    rows = [np.array([i, 1.0, 2.0], dtype=np.float32) for i in range(5)]
    embed(encoder, rows[:2])
    embed(encoder, rows[2:])
    assert len(shards(cache)) == 2
    store = EmbeddingCache.for_encoder(encoder)
    assert found_rows(store, rows, encoder) == [0, 1, 2, 3, 4]


def test_an_empty_cache_setting_means_the_default_folder(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("QUICKADAPT_CACHE", "")
    assert cache_dir() != tmp_path and cache_dir().name == "quickadapt"
    monkeypatch.setenv("QUICKADAPT_NO_CACHE", "0")
    assert EmbeddingCache.for_encoder(create_encoder("mlp", in_dim=3)) is not None
    monkeypatch.setenv("QUICKADAPT_NO_CACHE", "1")
    assert EmbeddingCache.for_encoder(create_encoder("mlp", in_dim=3)) is None


@pytest.mark.parametrize("value, on", [("", True), ("0", True), ("false", True), ("No", True), (" OFF ", True),
                                       ("FALSE", True), ("1", False), ("true", False), ("yes", False), ("on", False)])
def test_no_cache_false_no_or_off_leave_the_cache_on(cache, monkeypatch, value, on):
    """QUICKADAPT_NO_CACHE=false turned the cache off: any value but empty or 0 did."""
    monkeypatch.setenv("QUICKADAPT_NO_CACHE", value)
    encoder = create_encoder("mlp", in_dim=3)
    embed(encoder, [np.array([1.0, 2.0, 3.0], dtype=np.float32)])
    assert len(shards(cache)) == (1 if on else 0)


def test_a_quoted_tilde_in_the_cache_setting_is_the_home_folder(monkeypatch, tmp_path):
    """QUICKADAPT_CACHE="~/qc" (quoted: no shell expanded it) made a folder named ~ wherever a command ran."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("QUICKADAPT_CACHE", "~/qc")
    monkeypatch.delenv("QUICKADAPT_NO_CACHE", raising=False)
    assert cache_dir() == tmp_path / "home" / "qc"
    embed(create_encoder("mlp", in_dim=3), [np.array([1.0, 2.0, 3.0], dtype=np.float32)])
    assert len(shards(tmp_path / "home" / "qc")) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]  # no ./~


def test_the_cache_goes_where_xdg_cache_home_says(monkeypatch, tmp_path):
    """XDG_CACHE_HOME (where a cluster's small home quota sends every tool's cache) was ignored:
    this cache alone went on filling the home folder. A relative value is ignored, as the spec says."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("QUICKADAPT_CACHE", raising=False)
    monkeypatch.delenv("QUICKADAPT_NO_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "scratch"))
    embed(create_encoder("mlp", in_dim=3), [np.array([1.0, 2.0, 3.0], dtype=np.float32)])
    assert len(shards(tmp_path / "scratch" / "quickadapt")) == 1 and not (tmp_path / "home").exists()
    monkeypatch.setenv("XDG_CACHE_HOME", "scratch")
    assert cache_dir() == tmp_path / "home" / ".cache" / "quickadapt"
    monkeypatch.setenv("QUICKADAPT_CACHE", str(tmp_path / "qc"))
    assert cache_dir() == tmp_path / "qc"


def test_repeated_inputs_are_embedded_once_and_stored_once(cache, monkeypatch):
    encoder = create_encoder("mlp", in_dim=3)
    rows = [np.array([i, 2.0 * i, 1.0], dtype=np.float32) for i in range(3)]
    seen = []
    real = encoder.prepare
    monkeypatch.setattr(encoder, "prepare", lambda batch: seen.append(len(batch)) or real(batch))
    out = embed(encoder, rows * 5)  # 15 inputs, 3 distinct
    assert sum(seen) == 3
    assert all(np.array_equal(out[i], out[i % 3]) for i in range(15))
    assert sum(len(load_file(str(s))["keys"]) for s in shards(cache)) == 3


def test_a_long_run_stores_what_it_computed_chunk_by_chunk(cache, monkeypatch):
    """A Ctrl-C late in a long predict kept nothing: the cache was written once, at the end."""
    from quickadapt.encoders import base

    monkeypatch.setattr(base, "CACHE_CHUNK", 4)
    encoder = create_encoder("mlp", in_dim=3)
    rows = [np.array([i, 1.0, 0.0], dtype=np.float32) for i in range(10)]
    calls = []
    real = encoder.forward

    def forward(batch):  # interrupted in the third batch of four
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(batch)

    monkeypatch.setattr(encoder, "forward", forward)
    with pytest.raises(KeyboardInterrupt):
        embed(encoder, rows, batch_size=4)
    assert sum(len(load_file(str(s))["keys"]) for s in shards(cache)) == 8


def test_without_a_home_folder_the_cache_goes_to_the_temp_folder(monkeypatch, tmp_path, capsys):
    """HOME unset and no user entry (a container run as a bare uid): Path.home() raised, a traceback."""
    import pathlib

    import quickadapt.encoders.cache as cache_module

    def no_home():
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.delenv("QUICKADAPT_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("HOME", raising=False)
    monkeypatch.setattr(pathlib.Path, "home", staticmethod(no_home))
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    monkeypatch.setattr(cache_module, "_SAID_NO_HOME", [])
    assert cache_dir() == cache_dir() == tmp_path / f"quickadapt-cache-{os.getuid()}"
    assert capsys.readouterr().err.count("note: no home folder to keep the cache in") == 1
    encoder = create_encoder("minilm")
    first = embed(encoder, ["a text to keep"])
    assert len(shards(tmp_path)) == 1 and np.array_equal(embed(encoder, ["a text to keep"]), first)


def test_the_temp_folder_s_cache_is_this_user_s_alone(monkeypatch, tmp_path):
    """Its name is known in advance: another local user could make it first, or write into it, and
    put in the features of their choosing for the texts a run would embed, which were served."""
    import pathlib

    import quickadapt.encoders.cache as cache_module
    from quickadapt.errors import BadInput

    def no_home():
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.delenv("QUICKADAPT_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setattr(pathlib.Path, "home", staticmethod(no_home))
    monkeypatch.setattr(cache_module, "_SAID_NO_HOME", [True])
    for shared in ("open", "link", "own"):
        monkeypatch.setattr("tempfile.tempdir", str(tmp_path / shared))
        (tmp_path / shared).mkdir()
        folder = tmp_path / shared / f"quickadapt-cache-{os.getuid()}"
        if shared == "open":
            folder.mkdir()
            folder.chmod(0o777)  # as another user's umask 000 or chmod leaves it
        elif shared == "link":
            (tmp_path / "theirs").mkdir(mode=0o700)
            folder.symlink_to(tmp_path / "theirs")
        if shared == "own":
            assert cache_dir() == folder and folder.stat().st_mode & 0o777 == 0o700
        else:
            with pytest.raises(BadInput, match="not a folder of this user's alone"):
                embed(create_encoder("mlp", in_dim=3), [np.array([1.0, 2.0, 3.0], dtype=np.float32)])


def test_a_cache_folder_that_cannot_be_written_is_named_once(monkeypatch, tmp_path, capsys):
    """A read-only or full cache folder made every run embed its inputs again without a word."""
    import quickadapt.encoders.cache as cache_module

    (tmp_path / "a_file").write_text("x")  # the cache "folder" is a file: nothing can be stored there
    monkeypatch.setenv("QUICKADAPT_CACHE", str(tmp_path / "a_file"))
    monkeypatch.delenv("QUICKADAPT_NO_CACHE", raising=False)
    monkeypatch.setattr(cache_module, "_SAID_UNWRITABLE", [], raising=False)
    encoder = create_encoder("mlp", in_dim=3)
    rows = [np.array([1.0, 2.0, 3.0], dtype=np.float32)]
    assert np.array_equal(embed(encoder, rows), embed(encoder, rows))
    err = capsys.readouterr().err
    assert err.count("note: cannot store features in the embedding cache") == 1 and "(Not a directory)" in err


def test_temp_files_a_killed_run_left_are_removed_a_day_later(cache):
    """A SIGKILL while a shard was written left its temp file in the cache for good."""
    encoder = create_encoder("mlp", in_dim=3)
    embed(encoder, [np.array([1.0, 2.0, 3.0], dtype=np.float32)])
    folder = shards(cache)[0].parent
    old_ours, old_theirs, fresh = folder / ".abc.tmp", folder / ".tmpXYZ12", folder / ".def.tmp"
    for path in (old_ours, old_theirs, fresh):
        path.write_bytes(b"half a shard")
    two_days_ago = time.time() - 2 * 24 * 3600
    for path in (old_ours, old_theirs):
        os.utime(path, (two_days_ago, two_days_ago))
    embed(encoder, [np.array([4.0, 5.0, 6.0], dtype=np.float32)])  # the next write tidies up
    assert not old_ours.exists() and not old_theirs.exists() and fresh.exists()  # a writer may be at it still
    assert len(shards(cache)) == 2


def test_image_features_cached_by_an_older_image_reading_are_not_served(cache, monkeypatch, tmp_path):
    """A row's key is the file's bytes, so a change in how files become pixels (12-bit PNGs, light
    ink on transparency) served the old reading's features for the same files: the image
    reading's version is in the cache folder's key. Text and feature caches are not touched."""
    from PIL import Image

    import quickadapt.data.images as images

    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(np.full((28, 28), 60 * i, dtype=np.uint8)).save(paths[-1])
    conv4, mlp = create_encoder("conv4", channels=8), create_encoder("mlp", in_dim=4)
    embed(conv4, [str(p) for p in paths])  # fills the cache
    keys = [content_key(str(p), "image") for p in paths]
    out = np.zeros((3, conv4.embed_dim), dtype=np.float32)
    assert EmbeddingCache.for_encoder(conv4).read_into(keys, out).all()
    mlp_folder = EmbeddingCache.for_encoder(mlp).directory

    monkeypatch.setattr(images, "IMAGE_READING", images.IMAGE_READING + 1)
    assert not EmbeddingCache.for_encoder(conv4).read_into(keys, out).any()
    assert EmbeddingCache.for_encoder(mlp).directory == mlp_folder


def test_with_the_cache_off_a_fit_embeds_each_example_once(clinc_small, monkeypatch):
    """QUICKADAPT_NO_CACHE=1: a fit ran its frozen encoder over the same examples in every
    cross-validation fold, again on each held-out part and in the final fit (300 CLINC texts at
    --cv 3: 24 encoder runs instead of 6). It now keeps them in memory for the fit's length."""
    from quickadapt.adapt import adapt
    from quickadapt.data import load_dataset
    from quickadapt.encoders.hf_text import HFTextEncoder

    data = load_dataset(clinc_small["train"])
    on_disk = adapt(data, cv=3, progress=False)
    monkeypatch.setenv("QUICKADAPT_NO_CACHE", "1")
    rows = []
    real = HFTextEncoder.prepare
    monkeypatch.setattr(HFTextEncoder, "prepare", lambda self, batch: rows.extend(batch) or real(self, batch))
    off = adapt(data, cv=3, progress=False)
    assert sorted(rows) == sorted(set(data.inputs))  # each distinct text once, across folds and final fit
    assert off.info["cv_accuracy"] == on_disk.info["cv_accuracy"] and off.threshold == on_disk.threshold
    off.predict_proba(data.inputs[:2])  # outside a fit nothing is kept: the encoder runs again
    assert len(rows) == len(set(data.inputs)) + 2


def test_shards_of_a_batch_each_run_are_merged_too(tmp_path):
    """Shards of 256 rows or more were never merged: a predict of 300 new texts a day left a
    shard a day, every lookup opened all of them (1,000 such shards: 87-328 ms for one new
    text), growing with each run. They are merged into shards of at least embed's CACHE_CHUNK
    rows (under twice that, held in memory at once), every row still served once."""
    from safetensors import safe_open

    from quickadapt.encoders.base import CACHE_CHUNK
    from quickadapt.encoders.cache import MAX_SMALL_SHARDS

    store = EmbeddingCache(tmp_path)
    rng = np.random.default_rng(0)
    runs = 3 * MAX_SMALL_SHARDS
    rows = rng.standard_normal((runs * 300, 8)).astype(np.float32)
    keys = [content_key(f"ticket {i}", "text") for i in range(len(rows))]
    for start in range(0, len(rows), 300):
        store.add(keys[start : start + 300], rows[start : start + 300])
    sizes = []
    for shard in shards(tmp_path):
        with safe_open(str(shard), framework="numpy") as f:
            sizes.append(f.get_slice("keys").get_shape()[0])
    # as few shards as one fit of them all would write (a CACHE_CHUNK each), and up to MAX_SMALL_SHARDS small ones
    assert sum(sizes) == len(rows) and sum(n < CACHE_CHUNK for n in sizes) <= MAX_SMALL_SHARDS
    assert len(sizes) <= MAX_SMALL_SHARDS + len(rows) // CACHE_CHUNK and max(sizes) < 2 * CACHE_CHUNK
    out = np.zeros_like(rows)
    assert store.read_into(keys, out).all() and np.array_equal(out, rows)


def test_one_row_shards_are_merged_and_every_row_still_served(tmp_path):
    """A script that predicts one input per call wrote a one-row shard each time, and every
    lookup opened every shard (3,000 calls: 0.1 s a lookup, growing with each call)."""
    store = EmbeddingCache(tmp_path)
    rows = np.random.default_rng(0).standard_normal((100, 8)).astype(np.float32)
    keys = [content_key(f"request {i}", "text") for i in range(len(rows))]
    for key, row in zip(keys, rows):
        store.add([key], row[None])
    assert len(shards(tmp_path)) < len(rows) / 2
    out = np.zeros_like(rows)
    assert store.read_into(keys, out).all() and np.array_equal(out, rows)


def test_keys_matched_in_bulk_stay_exact_to_the_last_byte(tmp_path):
    """Stored keys are compared as 32-byte strings in numpy; keys ending in zero bytes, and keys
    differing only in their last byte, must each find their own row and no other."""
    store = EmbeddingCache(tmp_path / "store")
    keys = [b"\x07" * 31 + b"\x00", b"\x07" * 31 + b"\x01", b"\x07" * 30 + b"\x00\x00", b"\x00" * 32]
    store.add(keys, np.arange(len(keys) * 2, dtype=np.float32).reshape(-1, 2))
    asked = [keys[1], b"\x07" * 32, keys[3], keys[0], keys[2], keys[1]]
    out = np.full((len(asked), 2), np.nan, dtype=np.float32)
    assert store.read_into(asked, out).tolist() == [True, False, True, True, True, True]
    assert out[[0, 2, 3, 4, 5], 0].tolist() == [2.0, 6.0, 0.0, 4.0, 2.0]


def test_a_shard_of_another_dtype_is_a_miss_not_served_cast_nor_merged_in(tmp_path, monkeypatch):
    """Integer features of the right shape (a damaged or foreign file) were served cast to float,
    and predicted from silently; a merge stored them as float32, passing them for the cache's own."""
    import quickadapt.encoders.cache as cache_module

    store = EmbeddingCache(tmp_path)
    keys = [content_key(f"text {i}", "text") for i in range(3)]
    rows = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    store.add(keys, rows)
    shard = shards(tmp_path)[0]
    stored = load_file(str(shard))
    save_file({"keys": stored["keys"], "features": (stored["features"] * 1000).astype(np.int32)}, str(shard))
    out = np.full((3, 4), np.nan, dtype=np.float32)
    assert not store.read_into(keys, out).any()
    monkeypatch.setattr(cache_module, "MAX_SMALL_SHARDS", 0)  # the next write merges
    store.add([content_key("another", "text")], rows[:1])
    out = np.full((3, 4), np.nan, dtype=np.float32)
    assert not store.read_into(keys, out).any()


def test_a_second_merger_meanwhile_leaves_the_shards_to_the_first(tmp_path, monkeypatch):
    """Two processes merging at once (predicts run with `xargs -P 4`) each wrote the merged rows:
    4 processes adding 40 batches each left 131,018 rows for 29,199 inputs, in shards of 4,096
    or more never merged again. A merge that starts while another runs now leaves it alone."""
    from safetensors import safe_open

    from quickadapt.encoders.cache import MAX_SMALL_SHARDS

    store = EmbeddingCache(tmp_path)
    rows = np.random.default_rng(0).standard_normal((MAX_SMALL_SHARDS + 1, 8)).astype(np.float32)
    keys = [content_key(f"request {i}", "text") for i in range(len(rows))]
    for i in range(MAX_SMALL_SHARDS):
        store._write(np.frombuffer(keys[i], dtype=np.uint8)[None], rows[i : i + 1])
    real = EmbeddingCache._write
    second = []

    def merge_while_another_merges(self, shard_keys, features):
        if len(shard_keys) > 1 and not second:  # another process's merge (its own open of the lock file),
            second.append(True)                  # between this merge's reading of the shards and its writing
            EmbeddingCache(tmp_path).merge_small_shards()
        return real(self, shard_keys, features)

    monkeypatch.setattr(EmbeddingCache, "_write", merge_while_another_merges)
    store.add(keys[-1:], rows[-1:])
    stored = []
    for shard in shards(tmp_path):
        with safe_open(str(shard), framework="numpy") as f:
            stored.extend(k.tobytes() for k in f.get_tensor("keys"))
    assert second and sorted(stored) == sorted(keys)  # each row once
    out = np.zeros_like(rows)
    assert store.read_into(keys, out).all() and np.array_equal(out, rows)


def test_a_row_merged_away_while_it_is_looked_up_is_still_found(tmp_path, monkeypatch):
    """A lookup lists the shards, then opens them one by one; another process merging meanwhile
    removes shards from that list (their rows already in a new shard the list lacks): 210 of 230
    rows a process had just written were missed, and a predict rebuilt its encoder to compute them
    again. Shards gone since the listing send the lookup to the ones that appeared."""
    import quickadapt.encoders.cache as cache_module
    from quickadapt.encoders.cache import MAX_SMALL_SHARDS

    store = EmbeddingCache(tmp_path)
    rows = np.random.default_rng(0).standard_normal((MAX_SMALL_SHARDS + 1, 8)).astype(np.float32)
    keys = [content_key(f"request {i}", "text") for i in range(len(rows))]
    for i in range(len(rows)):
        store._write(np.frombuffer(keys[i], dtype=np.uint8)[None], rows[i : i + 1])
    real = cache_module.safe_open
    merged = []

    def merged_meanwhile(*args, **kwargs):
        if not merged:  # another process merges every shard just after this lookup listed them
            merged.append(True)
            EmbeddingCache(tmp_path).merge_small_shards()
        return real(*args, **kwargs)

    monkeypatch.setattr(cache_module, "safe_open", merged_meanwhile)
    out = np.zeros_like(rows)
    found = store.read_into(keys, out)
    assert merged and len(shards(tmp_path)) == 1
    assert found.all() and np.array_equal(out, rows)


def test_a_bit_flipped_on_disk_is_a_miss_not_a_wrong_feature(tmp_path, monkeypatch):
    """safetensors checks a file's layout, not its values: a bit flipped in a stored row (the disk,
    a copy gone wrong) was served as that input's features, a predict's score moved silently. The
    row is a miss, and a merge leaves it out; a shard written before rows had checks is read as before."""
    import quickadapt.encoders.cache as cache_module

    store = EmbeddingCache(tmp_path)
    keys = [content_key(f"text {i}", "text") for i in range(3)]
    rows = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    store.add(keys, rows)
    shard = shards(tmp_path)[0]
    data = bytearray(shard.read_bytes())
    header = int.from_bytes(data[:8], "little")
    start, _ = json.loads(data[8:8 + header])["features"]["data_offsets"]
    data[8 + header + start + 4 * (2 * 4 + 3)] ^= 0x01  # the last bit of row 2's value 3: finite, a little off
    shard.write_bytes(bytes(data))
    for merged in (False, True):
        out = np.full((3, 4), np.nan, dtype=np.float32)
        assert store.read_into(keys, out).tolist() == [True, True, False] and np.array_equal(out[:2], rows[:2])
        monkeypatch.setattr(cache_module, "MAX_SMALL_SHARDS", 0)  # the next write merges: the damaged row stays out
        store.add([content_key("another", "text")], rows[:1])
    assert len(shards(tmp_path)) == 1

    legacy = EmbeddingCache(tmp_path / "legacy")
    legacy.directory.mkdir()
    save_file({"keys": np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(3, 32), "features": rows},
              str(legacy.directory / "old.safetensors"))
    out = np.full((3, 4), np.nan, dtype=np.float32)
    assert legacy.read_into(keys, out).all() and np.array_equal(out, rows)
