"""Image classes (digits, image folders), class splits, episodes and their bad inputs."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import torch
from image_folders import huge_png, make_flat, make_omniglot, zip_folder

from metahpo.errors import TaskDataError
from metahpo.tasks.episodes import EpisodePool, episode_arrays, generate_episode_splits, split_classes
from metahpo.tasks.images import digit_rotation_collides, digits_classes, image_folder_classes

from conftest import task_params

TASKS = task_params()


def test_digits_rotations_keep_only_distinct_classes():
    classes = digits_classes([0, 90, 180, 270])
    assert len(classes.names) == 30
    for look_alike in ("6@rot180", "9@rot180", "0@rot180", "1@rot180", "8@rot180", "0@rot270", "6@rot270"):
        assert look_alike not in classes.names
    assert {"6", "9", "6@rot090", "9@rot090", "2@rot180", "7@rot270"} <= set(classes.names)
    assert classes.images.shape[1:] == (8, 8) and classes.images.dtype == np.float32
    assert classes.images.min() >= 0.0 and classes.images.max() <= 1.0
    assert len(classes.of_class(classes.names.index("6"))) > 150
    assert digit_rotation_collides(6, 180, {(9, 0)}) and not digit_rotation_collides(6, 90, {(9, 0)})
    assert digit_rotation_collides(0, 270, {(0, 90)}) and not digit_rotation_collides(3, 180, {(3, 0)})


def test_digits_resize():
    assert digits_classes([0], size=16).images.shape[1:] == (16, 16)


@pytest.mark.parametrize("layout", ["flat", "omniglot"])
def test_image_folder_layouts(tmp_path, layout):
    (make_flat if layout == "flat" else make_omniglot)(tmp_path / "data")
    classes = image_folder_classes(tmp_path / "data", 10, [0, 90])
    assert len(classes.names) == 16 and classes.images.shape == (16 * 6, 10, 10)
    first = "class0" if layout == "flat" else "alphabet0/character0"
    assert classes.names[0] == first and classes.names[8] == f"{first}@rot090"
    assert np.bincount(classes.labels).tolist() == [6] * 16
    rotated = classes.images[classes.of_class(8)]
    np.testing.assert_array_equal(rotated, np.rot90(classes.images[classes.of_class(0)], axes=(1, 2)))


def test_class_splits_are_disjoint_and_reproducible():
    rng = lambda seed: np.random.default_rng(seed)  # noqa: E731
    sources = [f"s{c % 10}" for c in range(30)]  # ten sources of three classes each
    a, b, c = (split_classes(sources, TASKS.class_splits, rng(s)) for s in (0, 0, 1))
    assert [len(a[k]) for k in a] == [18, 6, 6]
    assert sorted(np.concatenate(list(a.values())).tolist()) == list(range(30))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert any(not np.array_equal(a[k], c[k]) for k in a)
    for members in a.values():  # a source's classes all land in one split
        assert all(sum(sources[m] == s for m in members) in (0, 3) for s in set(sources))


def test_stored_episodes_have_n_classes_and_k_plus_q_images_each():
    classes = digits_classes([0, 90, 180, 270])
    splits, names = generate_episode_splits(TASKS, 3, classes, "digits")
    again, names_again = generate_episode_splits(TASKS, 3, classes, "digits")
    assert names == names_again and not set(names["meta_train"]["classes"]) & set(names["meta_test"]["classes"])
    test = splits["meta_test"]
    np.testing.assert_array_equal(test["support_index"], again["meta_test"]["support_index"])
    assert test["support_index"].shape == (9, 5, 4) and test["query_index"].shape == (9, 5, 3)
    for e in range(9):
        drawn = np.concatenate([test["support_index"][e], test["query_index"][e]], axis=1)  # [ways, pool + query]
        assert len(np.unique(drawn)) == drawn.size
        labels = test["labels"][drawn]
        assert all(len(set(row)) == 1 for row in labels.tolist()) and len(set(labels[:, 0])) == 5
    support_x, support_y, query_x, query_y = episode_arrays(test, shots=1)
    assert support_x.shape == (9, 5, 8, 8) and query_x.shape == (9, 15, 8, 8)
    assert support_y[0].tolist() == [0, 1, 2, 3, 4] and query_y[0].tolist() == [
        0,
        0,
        0,
        1,
        1,
        1,
        2,
        2,
        2,
        3,
        3,
        3,
        4,
        4,
        4,
    ]


def test_training_episodes_are_n_way_and_reproducible():
    classes = digits_classes([0, 90])
    splits, _ = generate_episode_splits(task_params(ways=3), 0, classes, "digits")
    pool = EpisodePool.from_split(splits["meta_train"], 3, torch.device("cpu"))
    sx, sy, qx, qy = pool.sample(4, 2, 3, torch.Generator().manual_seed(5))
    again = pool.sample(4, 2, 3, torch.Generator().manual_seed(5))
    assert torch.equal(sx, again[0]) and torch.equal(qx, again[2])
    assert sx.shape == (4, 6, 8, 8) and qx.shape == (4, 9, 8, 8)
    assert sy[0].tolist() == [0, 0, 1, 1, 2, 2] and qy[0].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    images = torch.from_numpy(splits["meta_train"]["images"]).flatten(1)
    labels = splits["meta_train"]["labels"]
    for t in range(4):
        both = torch.cat([sx[t], qx[t]]).flatten(1)
        idx = [int(torch.nonzero((images == img).all(dim=1))[0]) for img in both]
        assert len(set(idx)) == 15
        true = labels[idx]
        by_label = {}
        for lab, cls in zip(torch.cat([sy[t], qy[t]]).tolist(), true):
            by_label.setdefault(lab, set()).add(cls)
        assert all(len(v) == 1 for v in by_label.values()) and len({next(iter(v)) for v in by_label.values()}) == 3


def test_corrupt_image_is_named(tmp_path):
    make_flat(tmp_path / "data")
    bad = tmp_path / "data" / "class3" / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    with pytest.raises(TaskDataError, match="broken.png: unreadable image"):
        image_folder_classes(tmp_path / "data", 8, [0])


def test_empty_class_is_named(tmp_path):
    make_flat(tmp_path / "data")
    (tmp_path / "data" / "empty_one").mkdir()
    with pytest.raises(TaskDataError, match="class 'empty_one' has no images"):
        image_folder_classes(tmp_path / "data", 8, [0])


def test_fewer_classes_than_ways_names_the_split(tmp_path):
    make_flat(tmp_path / "data", classes=4)
    classes = image_folder_classes(tmp_path / "data", 8, [0])
    expected = r"meta_val gets 1 of the 4 classes \(1 of the 4 source classes, .*\), fewer than tasks.ways = 2"
    with pytest.raises(TaskDataError, match=expected):
        generate_episode_splits(task_params(ways=2), 0, classes, "data")


def test_class_with_too_few_images_is_named(tmp_path):
    make_flat(tmp_path / "data", classes=10, per_class=6)
    for extra in ("3.png", "4.png", "5.png"):
        (tmp_path / "data" / "class7" / extra).unlink()
    classes = image_folder_classes(tmp_path / "data", 8, [0])
    with pytest.raises(TaskDataError, match="class 'class7' has 3 images, fewer than the 5"):
        generate_episode_splits(task_params(ways=2, shots=1, eval_shots=[2]), 0, classes, "data")


def test_mixed_layouts_and_missing_root_are_named(tmp_path):
    make_omniglot(tmp_path / "data")
    stray = tmp_path / "data" / "loose_class"
    stray.mkdir()
    (stray / "0.png").write_bytes(b"")
    with pytest.raises(TaskDataError, match="loose_class: mixes layouts"):
        image_folder_classes(tmp_path / "data", 8, [0])
    with pytest.raises(TaskDataError, match="nowhere: image folder or .zip file not found"):
        image_folder_classes(tmp_path / "nowhere", 8, [0])


def test_links_inside_the_folder_are_read_and_links_out_of_it_refused(tmp_path, monkeypatch):
    """A link to another image of the folder is an image like any other; one leading out of it is refused."""
    monkeypatch.chdir(tmp_path)
    folders = make_flat(tmp_path / "data/raw/imgs", classes=3)
    plain = image_folder_classes("data/raw/imgs", 8, [0])
    (folders[2] / "5.png").unlink()
    (folders[2] / "5.png").symlink_to(folders[2] / "4.png")
    linked = image_folder_classes("data/raw/imgs", 8, [0])
    np.testing.assert_array_equal(linked.images[-1], linked.images[-2])
    assert linked.images.shape == plain.images.shape
    (tmp_path / "elsewhere.png").write_bytes((folders[1] / "0.png").read_bytes())
    (folders[1] / "0.png").unlink()
    (folders[1] / "0.png").symlink_to(tmp_path / "elsewhere.png")
    with pytest.raises(TaskDataError, match="class1/0.png: a symbolic link out of tasks.root"):
        image_folder_classes("data/raw/imgs", 8, [0])


def test_sixteen_bit_images_keep_their_range(tmp_path):
    """A 16-bit PNG reads as the same image as its 8-bit version, not clipped to white."""
    from PIL import Image

    make_flat(tmp_path / "eight", classes=3)
    make_flat(tmp_path / "sixteen", classes=3)
    for png in sorted((tmp_path / "sixteen").rglob("*.png")):
        wide = np.asarray(Image.open(png), dtype=np.uint16) * 257  # 8-bit value v is 257 v at 16 bits
        Image.fromarray(wide).save(png)
        assert Image.open(png).mode in ("I;16", "I")
    eight = image_folder_classes(tmp_path / "eight", 12, [0])
    sixteen = image_folder_classes(tmp_path / "sixteen", 12, [0])
    assert 0.3 < eight.images.mean() < 0.7
    np.testing.assert_allclose(sixteen.images, eight.images, atol=1e-5)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "LA", "P", "P+transparency", "1"])
def test_every_eight_bit_mode_reads_as_its_grey_picture(tmp_path, mode):
    """Dark strokes on white, saved in each mode (strokes only in the alpha channel where there is one)."""
    from PIL import Image

    strokes = np.random.default_rng(0).random((12, 12)) > 0.6
    grey = Image.fromarray(np.where(strokes, 0, 255).astype(np.uint8), mode="L")
    if mode in ("RGBA", "LA"):  # black everywhere; the strokes are opaque, the rest transparent
        image = Image.new(mode, grey.size, 0)
        image.putalpha(Image.fromarray(np.where(strokes, 255, 0).astype(np.uint8), mode="L"))
    elif mode == "P+transparency":  # the background's palette entry is transparent, its hidden colour black
        image = grey.convert("P")
        y, x = np.argwhere(~strokes)[0]
        index = image.getpixel((int(x), int(y)))
        palette = image.getpalette()
        palette[3 * index : 3 * index + 3] = [0, 0, 0]
        image.putpalette(palette)
        image.info["transparency"] = index
    else:
        image = grey.convert(mode)
    for c in range(3):
        (tmp_path / "data" / f"class{c}").mkdir(parents=True)
        image.save(tmp_path / "data" / f"class{c}" / "0.png")
    (tmp_path / "plain" / "class0").mkdir(parents=True)
    grey.save(tmp_path / "plain" / "class0" / "0.png")
    read = image_folder_classes(tmp_path / "data", 12, [0]).images[0]
    np.testing.assert_allclose(read, image_folder_classes(tmp_path / "plain", 12, [0]).images[0], atol=1 / 255)


@pytest.mark.parametrize("layout", ["flat", "omniglot"])
def test_hidden_entries_are_skipped_at_every_depth(tmp_path, layout):
    (make_flat if layout == "flat" else make_omniglot)(tmp_path / "data")
    plain = image_folder_classes(tmp_path / "data", 8, [0])
    for folder in [tmp_path / "data", *(p for p in (tmp_path / "data").rglob("*") if p.is_dir())]:
        (folder / ".thumbs").mkdir()
        (folder / ".thumbs" / "0.png").write_bytes((next((tmp_path / "data").rglob("0.png"))).read_bytes())
        (folder / "._0.png").write_bytes(b"resource fork")
        (folder / ".DS_Store").write_bytes(b"\0")
    (tmp_path / "data" / "__MACOSX").mkdir()
    hidden = image_folder_classes(tmp_path / "data", 8, [0])
    assert hidden.names == plain.names
    np.testing.assert_array_equal(hidden.images, plain.images)


def test_subfolder_of_one_class_names_that_class(tmp_path):
    make_flat(tmp_path / "data")
    (tmp_path / "data" / "class5" / "extra").mkdir()
    with pytest.raises(TaskDataError, match=r"class5/extra: a folder inside class folder 'class5'"):
        image_folder_classes(tmp_path / "data", 8, [0])


def test_decompression_bomb_is_named(tmp_path):
    make_flat(tmp_path / "data")
    huge_png(tmp_path / "data" / "class2" / "huge.png")
    with pytest.raises(TaskDataError, match=r"class2/huge.png: image too large to read safely"):
        image_folder_classes(tmp_path / "data", 8, [0])


@pytest.mark.parametrize("loop", ["self", "parent"])
def test_symbolic_link_loops_are_named(tmp_path, monkeypatch, loop):
    monkeypatch.chdir(tmp_path)
    folders = make_flat(tmp_path / "data/raw/imgs", classes=3)
    link = folders[1] / "loop"
    link.symlink_to(link if loop == "self" else folders[1], target_is_directory=loop == "parent")
    with pytest.raises(TaskDataError, match=r"class1/loop: a symbolic link (that loops|to a folder above it)"):
        image_folder_classes("data/raw/imgs", 8, [0])


@pytest.mark.parametrize("top", [None, "images_background"])
def test_zip_reads_as_its_folder(tmp_path, top):
    """A zip of an Omniglot folder (with or without the official zips' top folder) gives the same classes."""
    make_omniglot(tmp_path / "data", per_class=3)
    (tmp_path / "data" / "alphabet0" / ".thumbs").mkdir()
    (tmp_path / "data" / "alphabet0" / ".thumbs" / "0.png").write_bytes(b"")
    folder = image_folder_classes(tmp_path / "data", 8, [0, 90], "alphabet")
    archive = zip_folder(tmp_path / "data", tmp_path / "omniglot.zip", top)
    zipped = image_folder_classes(archive, 8, [0, 90], "alphabet")
    assert zipped.names == folder.names and zipped.sources == folder.sources
    np.testing.assert_array_equal(zipped.images, folder.images)


def test_bad_zip_is_named(tmp_path):
    (tmp_path / "broken.zip").write_bytes(b"PK not a zip")
    with pytest.raises(TaskDataError, match="broken.zip: unreadable zip file"):
        image_folder_classes(tmp_path / "broken.zip", 8, [0])
    (tmp_path / "images.tar").write_bytes(b"")
    with pytest.raises(TaskDataError, match="images.tar: image folder or .zip file not found"):
        image_folder_classes(tmp_path / "images.tar", 8, [0])


def test_a_folder_of_zips_reads_every_zip(tmp_path):
    """Omniglot's background and evaluation zips side by side read as one folder of both sets of alphabets."""
    make_omniglot(tmp_path / "both", alphabets=4, per_class=3)
    (tmp_path / "zips").mkdir()
    for part, alphabets in (("background", (0, 1)), ("evaluation", (2, 3))):
        with zipfile.ZipFile(tmp_path / "zips" / f"images_{part}.zip", "w") as out:
            for a in alphabets:
                for path in sorted((tmp_path / "both" / f"alphabet{a}").rglob("*")):
                    out.write(path, f"images_{part}/" + path.relative_to(tmp_path / "both").as_posix())
    (tmp_path / "zips" / "images_background.zip.dvc").write_text("outs: []\n")  # as dvc import-url leaves
    folder = image_folder_classes(tmp_path / "both", 8, [0], "alphabet")
    zipped = image_folder_classes(tmp_path / "zips", 8, [0], "alphabet")
    assert zipped.names == folder.names and len(set(zipped.sources)) == 4
    np.testing.assert_array_equal(zipped.images, folder.images)
    zip_folder(tmp_path / "both", tmp_path / "zips" / "again.zip")
    with pytest.raises(TaskDataError, match="images_background.zip: folder 'alphabet0' is also in .*again.zip"):
        image_folder_classes(tmp_path / "zips", 8, [0])


def test_zip_index_lists_every_folder_once_with_implied_folders():
    from metahpo.tasks.images import _zip_index

    index = _zip_index(["a/", "a/b/c.png", "a/b/d.png", "x.png", "e/f/", "/abs.png", "g//h.png"])
    assert index == {"": ["a/", "x.png", "e/", "g/"], "a/": ["a/b/"], "a/b/": ["a/b/c.png", "a/b/d.png"],
                     "e/": ["e/f/"], "e/f/": [], "g/": []}  # fmt: skip
