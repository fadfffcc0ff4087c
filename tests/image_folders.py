"""Tiny image datasets on disk, in the flat and the Omniglot layout, for the image_folder tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

SIDE = 12


def class_image(label: int, index: int) -> Image.Image:
    """A grey-scale image: the class's own random pattern plus a little per-image noise."""
    pattern = np.random.default_rng(label).random((SIDE, SIDE)) > 0.5
    noise = np.random.default_rng(1000 * label + index).random((SIDE, SIDE)) * 40
    return Image.fromarray((pattern * 200 + noise).astype(np.uint8), mode="L")


def make_flat(root: Path, classes: int = 8, per_class: int = 6) -> list[Path]:
    """``root/class<c>/<i>.png``; returns the class folders."""
    folders = []
    for c in range(classes):
        folder = root / f"class{c}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            class_image(c, i).save(folder / f"{i}.png")
        folders.append(folder)
    return folders


def make_omniglot(root: Path, alphabets: int = 2, characters: int = 4, per_class: int = 6) -> list[Path]:
    """``root/alphabet<a>/character<c>/<i>.png``; returns the character folders."""
    folders = []
    for a in range(alphabets):
        for c in range(characters):
            folder = root / f"alphabet{a}" / f"character{c}"
            folder.mkdir(parents=True)
            for i in range(per_class):
                class_image(a * characters + c, i).save(folder / f"{i}.png")
            folders.append(folder)
    return folders


def image_folder_params(params: dict, root: str) -> dict:
    """Tiny 2-way settings for an image folder of 8 classes (16 with two rotations)."""
    params["tasks"].update(
        family="image_folder",
        root=root,
        image_size=8,
        ways=2,
        shots=1,
        query=2,
        eval_shots=[1, 2],
        rotations=[0, 90],
        class_splits={"meta_train": 0.5, "meta_val": 0.25, "meta_test": 0.25},
    )
    params["tasks"]["splits"].update(meta_val=6, meta_test=8)
    params["meta"]["query"] = 1  # meta-training episodes draw fewer query images than the stored ones
    params["model"].update(arch="conv", hidden=4, layers=2)
    params["search"]["space"]["algorithm"]["values"] = ["maml", "fomaml", "metasgd", "anil"]  # the CNP needs an MLP
    params["search"]["space"]["hidden"] = {"type": "integer", "low": 3, "high": 6, "prior": "uniform"}
    params["search"]["objective"] = "accuracy"
    return params


def huge_png(path: Path, side: int = 20000) -> None:
    """A valid PNG header declaring ``side`` x ``side`` grey pixels (a decompression bomb), without its pixels."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def zip_folder(folder: Path, archive: Path, top: str | None = None) -> Path:
    """Zip ``folder``'s contents into ``archive``, under a top folder ``top`` (as the Omniglot zips are) if given."""
    import zipfile

    with zipfile.ZipFile(archive, "w") as out:
        for path in sorted(folder.rglob("*")):
            name = path.relative_to(folder).as_posix()
            out.write(path, f"{top}/{name}" if top else name)
    return archive
