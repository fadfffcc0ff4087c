"""Labelled image classes for few-shot classification: scikit-learn's digits, or the user's own folder.

Both sources give grey-scale images as float32 in [0, 1], ``[images, height, width]``, an integer class
label per image, a name per class and the *source* of each class. Classes are multiplied by rotations as
for Omniglot (a class turned by 90 degrees is a new class); for digits, a rotation that would read as
another class is dropped. The source is the unit that class splits keep together: a class and all its
rotations share one, so no held-out class is a turned copy of a training class (see
:func:`metahpo.episodes.split_classes`).
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from metahpo.errors import TaskDataError, first_line
from metahpo.params import TaskParams
from metahpo.task_names import DIGITS_SIDE

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# What a digit reads as when turned upside down: 0, 1 and 8 as themselves, 6 and 9 as each other.
UPSIDE_DOWN = {0: 0, 1: 1, 8: 8, 6: 9, 9: 6}


@dataclass(frozen=True)
class ImageClasses:
    """Images ``[n, height, width]`` (float32 in [0, 1]), their class ``labels`` ``[n]`` and class ``names``.

    ``sources[c]`` names the source of class ``c``: the digit shape, class folder, character or alphabet
    it was made from. Rotations of one source are classes of their own that share its source.
    """

    images: np.ndarray
    labels: np.ndarray
    names: list[str]
    sources: list[str]

    def of_class(self, label: int) -> np.ndarray:
        """Indices of the images of one class."""
        return np.flatnonzero(self.labels == label)


def rotation_name(name: str, degrees: int) -> str:
    """The name of a class turned by ``degrees`` (the class itself at 0)."""
    return name if degrees == 0 else f"{name}@rot{degrees:03d}"


def _rotated(images: np.ndarray, degrees: int) -> np.ndarray:
    return np.ascontiguousarray(np.rot90(images, k=degrees // 90, axes=(1, 2)))


def digit_rotation_collides(digit: int, degrees: int, kept: set[tuple[int, int]]) -> bool:
    """Whether ``digit`` turned by ``degrees`` reads as an already kept (digit, rotation) class.

    Turning a digit by 180 degrees more than another class is the same as turning that other class's
    upside-down reading: a 6 at 180 degrees is a 9 at 0, a 0 at 270 is a 0 at 90.
    """
    twin = UPSIDE_DOWN.get(digit)
    return twin is not None and (twin, (degrees - 180) % 360) in kept


def digit_source(digit: int) -> str:
    """The source (split unit) of a digit: its own, except 6 and 9, one shape turned by a half turn."""
    return "6+9" if digit in (6, 9) else str(digit)


def digits_classes(rotations: list[int], size: int = DIGITS_SIDE) -> ImageClasses:
    """scikit-learn's 1,797 handwritten 8x8 digits (shipped with the package), classes multiplied by ``rotations``.

    ``size`` other than 8 resizes the images (for networks that need larger inputs).

    Rotations are taken in the order given; a rotated digit that reads as a class kept before it
    (see :func:`digit_rotation_collides`) is left out, so every class is distinct: with rotations
    0, 90, 180 and 270 the 10 digits give 30 classes. A 9 is a 6 turned by a half turn, so 6 and 9
    share a source (see :func:`digit_source`): 9 sources in all.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    base = (digits.images / 16.0).astype(np.float32)
    if size != base.shape[-1]:
        base = np.stack([_resize(image, size) for image in base])
    images, labels, names, sources = [], [], [], []
    kept: set[tuple[int, int]] = set()
    for degrees in rotations:
        for digit in range(10):
            if digit_rotation_collides(digit, degrees, kept):
                continue
            kept.add((digit, degrees))
            images.append(_rotated(base[digits.target == digit], degrees))
            labels.append(np.full(len(images[-1]), len(names), dtype=np.int64))
            names.append(rotation_name(str(digit), degrees))
            sources.append(digit_source(digit))
    return ImageClasses(np.concatenate(images), np.concatenate(labels), names, sources)


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    resized = Image.fromarray(image, mode="F").resize((size, size), Image.Resampling.BILINEAR)
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


def _visible(folder) -> list:
    """The entries of ``folder`` (a ``Path`` or a :class:`ZipEntry`) in sorted order, without hidden ones.

    Hidden means a name starting with a dot (``.thumbs/``, ``.DS_Store``, ``._x.png``) or ``__MACOSX``
    (the resource forks macOS adds to zips); they are skipped at every depth.
    """
    return sorted(
        (e for e in folder.iterdir() if not e.name.startswith(".") and e.name != "__MACOSX"), key=lambda e: e.name
    )


def _folders(folder) -> list:
    return [e for e in _visible(folder) if e.is_dir()]


def top_folders(root: Path) -> list:
    """The top-level folders (classes or alphabets) under ``root``: a folder, a ``.zip``, or a folder of zips.

    A zip is read in place, not unpacked; one whose top level holds a single folder and no files is read from
    inside that folder, as the official Omniglot zips hold ``images_background/<alphabet>/<character>/``. A
    folder that holds zips and no folders (the official ``images_background.zip`` and ``images_evaluation.zip``
    imported side by side) gives the top folders of every zip, which must not share a name.
    """
    if root.is_dir():
        _refuse_links_out(root)
        folders = _folders(root)
        zips = [e for e in _visible(root) if e.is_file() and e.suffix.lower() == ".zip"]
        if folders or not zips:
            return folders
        merged = {}
        for archive in zips:
            for folder in _zip_top(archive):
                if folder.name in merged:
                    raise TaskDataError(
                        f"{archive}: folder {folder.name!r} is also in {merged[folder.name].archive.filename} "
                        "(tasks.root: the zips of one folder are read together, so their folders need distinct names)"
                    )
                merged[folder.name] = folder
        return sorted(merged.values(), key=lambda f: f.name)
    if not (root.is_file() and root.suffix.lower() == ".zip"):
        raise TaskDataError(f"{root}: image folder or .zip file not found (tasks.root)")
    _refuse_links_out(root)
    return _zip_top(root)


class ZipEntry:
    """A file or folder inside a zip, with the few ``Path`` methods the reader uses.

    Children come from an index of the zip's names built once, so listing every folder of Omniglot's
    32,460 images costs one pass over the names (``zipfile.Path`` scans every name at each listing).
    """

    def __init__(self, archive: zipfile.ZipFile, at: str, index: dict[str, list[str]]):
        self.archive, self.at, self.index = archive, at, index
        self.name = at.rstrip("/").rsplit("/", 1)[-1]
        self.suffix = Path(self.name).suffix

    def is_dir(self) -> bool:
        return self.at in self.index

    def is_file(self) -> bool:
        return not self.is_dir()

    def iterdir(self):
        return (ZipEntry(self.archive, at, self.index) for at in self.index.get(self.at, []))

    def open(self, mode: str = "rb"):
        return self.archive.open(self.at)

    def __str__(self) -> str:
        return f"{self.archive.filename}/{self.at}".rstrip("/")


def _zip_index(names: list[str]) -> dict[str, list[str]]:
    """Folder (``""`` for the top, else ``a/b/``) -> its children's names, with implied folders added."""
    index: dict[str, list[str]] = {"": []}
    seen: set[str] = set()
    for name in names:
        parts, parent = name.split("/"), ""
        for i, part in enumerate(parts):
            if not part:  # the end of a folder's name, or an odd name ("/x", "a//b") that no folder reaches
                break
            at = parent + part + ("" if i == len(parts) - 1 else "/")
            if at not in seen:
                seen.add(at)
                index[parent].append(at)
                if at.endswith("/"):
                    index[at] = []
            parent = at
    return index


def _zip_top(archive: Path) -> list:
    try:
        opened = zipfile.ZipFile(archive)
        top = ZipEntry(opened, "", _zip_index(opened.namelist()))
        inside = _visible(top)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise TaskDataError(f"{archive}: unreadable zip file ({first_line(exc)}) (tasks.root)") from None
    if len(inside) == 1 and inside[0].is_dir():
        inside = _visible(inside[0])
    return [e for e in inside if e.is_dir()]


def _class_dirs(root: Path) -> list[tuple[str, object]]:
    """``(name, directory)`` of every class: ``root/<class>/`` (flat) or ``root/<alphabet>/<character>/``.

    Names are ``<class>`` or ``<alphabet>/<character>``; ``root`` is read by :func:`top_folders`.
    """
    top = top_folders(root)
    if not top:
        raise TaskDataError(
            f"{root}: no class folders (expected root/<class>/*.png or root/<alphabet>/<character>/*.png, "
            "or a .zip of them)"
        )
    nested = {str(p): _folders(p) for p in top}
    flat = [p for p in top if not nested[str(p)]]
    if not flat:
        return [(f"{a.name}/{c.name}", c) for a in top for c in nested[str(a)]]
    if len(flat) == len(top):
        return [(p.name, p) for p in top]
    deep = [p for p in top if nested[str(p)]]
    if len(deep) <= len(flat):  # mostly class folders: the odd one out holds a folder
        sub = nested[str(deep[0])][0]
        raise TaskDataError(
            f"{sub}: a folder inside class folder {deep[0].name!r} (the other folders of {root} are classes of "
            "images; expected every folder to be a class of images, or every folder an alphabet of character folders)"
        )
    raise TaskDataError(
        f"{flat[0]}: mixes layouts (other folders of {root} hold character folders; expected every "
        "folder to be an alphabet of character folders, or every folder a class of images)"
    )


def _refuse_links_out(root: Path) -> None:
    """Refuse a symbolic link that leads out of ``root``, loops, or is ``root`` or a folder above it, up to here.

    DVC hashes the folder it depends on, not what such a link points to, so images changed behind the link
    would be used stale without a word. Hidden entries are skipped, as the reader skips them.
    """
    here = Path.cwd()
    for path in [root, *root.parents]:
        if path.absolute() == here or not path.absolute().is_relative_to(here):
            break
        if path.is_symlink():
            raise TaskDataError(f"{path}: a symbolic link (tasks.root); copy the images in instead")
    if not root.is_dir():
        return
    base = root.resolve()
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d != "__MACOSX"]
        for name in [*dirs, *files]:
            path = Path(folder) / name
            if not path.is_symlink() or name.startswith("."):
                continue
            try:
                target = path.resolve(strict=True)
            except (RuntimeError, OSError) as exc:
                kind = "loops" if isinstance(exc, RuntimeError) or "loop" in str(exc).lower() else "is broken"
                raise TaskDataError(f"{path}: a symbolic link that {kind} (tasks.root)") from None
            if not target.is_relative_to(base):
                raise TaskDataError(
                    f"{path}: a symbolic link out of tasks.root (to {target}); DVC does not see changes "
                    "behind it, so copy the images in instead"
                )
            if target.is_dir() and path.parent.resolve().is_relative_to(target):
                raise TaskDataError(f"{path}: a symbolic link to a folder above it, a loop (tasks.root)")


# Full scale of the integer image modes Pillow does not reduce to 8 bits without clipping.
WIDE_MODES = {"I;16": 65535, "I;16L": 65535, "I;16B": 65535, "I;16N": 65535, "I": 65535}


def load_image(path, size: int) -> np.ndarray:
    """One image as grey-scale float32 ``[size, size]`` in [0, 1]; a bad file is named in the error.

    8-bit modes (grey, palette, RGB, CMYK) go through Pillow's grey conversion, transparent pixels over white
    (the background they are shown on); 16-bit grey (``I;16``, and ``I`` as Pillow opens 16-bit PNGs) is
    scaled by its full range, not clipped at 255.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with path.open("rb") as stream, Image.open(stream) as image:
            if image.mode in WIDE_MODES:
                wide = np.asarray(image, dtype=np.float32) / WIDE_MODES[image.mode]
                grey = Image.fromarray(np.clip(wide, 0.0, 1.0), mode="F")
                resized = grey.resize((size, size), Image.Resampling.LANCZOS)
                return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)
            if image.mode == "F":
                raise ValueError("floating-point pixels have no defined range; save it as 8- or 16-bit")
            if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info:
                # Transparent pixels read as the white background they are shown on, not as their hidden colour.
                image = Image.alpha_composite(Image.new("RGBA", image.size, "white"), image.convert("RGBA"))
            grey = image.convert("L").resize((size, size), Image.Resampling.LANCZOS)
            return np.asarray(grey, dtype=np.float32) / 255.0
    except Image.DecompressionBombError as exc:
        raise TaskDataError(f"{path}: image too large to read safely ({first_line(exc)})") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
        raise TaskDataError(f"{path}: unreadable image ({first_line(exc)})") from None


def image_folder_classes(
    root: str | Path, size: int, rotations: list[int], split_by: str = "character"
) -> ImageClasses:
    """Every class folder under ``root`` (Omniglot or flat layout), resized to ``size`` x ``size``, times ``rotations``.

    Class folders are read in sorted order, so the same folder always gives the same classes. The source
    of a class is its folder (``split_by: character``, the default) or, in the Omniglot layout with
    ``split_by: alphabet``, its alphabet, so that whole alphabets are held out (Lake et al.'s protocol).
    """
    root = Path(root)
    per_class = []
    dirs = _class_dirs(root)
    if split_by == "alphabet" and "/" not in dirs[0][0]:
        raise TaskDataError(
            f"{root}: tasks.split_by: alphabet needs the Omniglot layout root/<alphabet>/<character>/, "
            "but this folder holds class folders of images (use tasks.split_by: character)"
        )
    for name, directory in dirs:
        files = [p for p in _visible(directory) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        if not files:
            raise TaskDataError(f"{directory}: class {name!r} has no images ({', '.join(IMAGE_SUFFIXES)})")
        per_class.append((name, np.stack([load_image(f, size) for f in files])))
    images, labels, names, sources = [], [], [], []
    for degrees in rotations:
        for name, stack in per_class:
            images.append(_rotated(stack, degrees))
            labels.append(np.full(len(stack), len(names), dtype=np.int64))
            names.append(rotation_name(name, degrees))
            sources.append(name.split("/")[0] if split_by == "alphabet" else name)
    return ImageClasses(np.concatenate(images), np.concatenate(labels), names, sources)


def load_classes(tasks: TaskParams) -> ImageClasses:
    """The image classes of the ``tasks`` section's family (``digits`` or ``image_folder``)."""
    if tasks.family == "digits":
        return digits_classes(tasks.rotations, tasks.image_side)
    return image_folder_classes(tasks.root, tasks.image_size, tasks.rotations, tasks.split_by)
