"""The samples of an evaluation: which files feed which graph input, and reading them as arrays.

Torch-free. A :class:`Sample` is a key (what resume and sharding go by) and the files of its inputs.
Two ways to name them:

- **whole archives** (``find_samples(sources)``): each ``.npz`` under a directory / glob holds every
  graph input; the key is the path relative to the directory (or the glob's fixed leading folders), so
  ``d300``, ``./d300`` and ``/abs/d300`` give the same keys.
- **templates** (``find_samples(templates={"logits": "preds/{stem}.npy", "labels": "gt/{stem}.png"})``):
  the samples are the stems of the first template's matches; the key is the stem. A partner file
  that does not exist is found when the sample is read (a failed row naming the file).

Formats by extension: ``.npz`` (``file.npz:array`` picks an array; without it, the array named like
the input, or the only array), ``.npy``, ``.png`` / ``.tif`` / ``.tiff`` / ``.bmp`` (Pillow: 8- and
16-bit grayscale and palette images read as integer class ids — a palette image gives its indices, not
colours; ``.tif`` that Pillow cannot read goes through ``tifffile``).

Directory walks follow symbolic links but visit each real directory and each real file once (by
device and inode), so a link to a parent folder neither loops nor repeats files.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from lossgraph._checks import InputError

#: extensions read through Pillow (``.tif`` falls back to tifffile)
IMAGE_EXTS = (".png", ".tif", ".tiff", ".bmp")
STEM = "{stem}"
#: the input name of a whole-archive sample's only file: every graph input comes from it
ALL_INPUTS = "*"


@dataclass(frozen=True)
class Source:
    """One file of a sample: graph ``input`` (or :data:`ALL_INPUTS`), ``path``, ``.npz`` ``array`` or None."""

    input: str
    path: str
    array: str | None = None


@dataclass(frozen=True)
class Sample:
    """One row of the results: ``key`` (relative path, or the stem) and the files its inputs come from."""

    key: str
    sources: tuple[Source, ...]

    @property
    def file(self) -> str:
        """The path shown in rows and messages: the first source."""
        return self.sources[0].path


# --- walking directories ----------------------------------------------------------------------------


def walk(root: str) -> Iterator[str]:
    """Every regular file under ``root`` (links followed), each real directory and file once, sorted
    per directory; real folders before linked ones, so a file is named by its real path when it can be."""
    seen_dirs: set[tuple[int, int]] = set()
    seen_files: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        try:
            st = os.stat(dirpath)
        except OSError:
            dirnames[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen_dirs:
            dirnames[:] = []
            continue
        seen_dirs.add((st.st_dev, st.st_ino))
        dirnames.sort(key=lambda d: (os.path.islink(os.path.join(dirpath, d)), d))
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            try:
                fst = os.stat(path)
            except OSError:  # a dangling link
                continue
            if not os.path.isfile(path) or (fst.st_dev, fst.st_ino) in seen_files:
                continue
            seen_files.add((fst.st_dev, fst.st_ino))
            yield path


def _rel(path: str, base: str) -> str:
    return os.path.relpath(path, base).replace(os.sep, "/")


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """A relative glob (``*``, ``?``, ``[...]``, ``**`` for any folders) as a regex over ``/`` paths."""
    out = ""
    for part in pattern.split("/"):
        if part == "**":
            out += "(?:[^/]+/)*"
            continue
        for tok in re.findall(r"\[[^\]]*\]|.", part, re.S):
            out += "[^/]*" if tok == "*" else "[^/]" if tok == "?" else tok if tok.startswith("[") and len(tok) > 1 else re.escape(tok)
        out += "/"
    return re.compile(out.removesuffix("/") + r"\Z", re.S)


def npz_files(sources: str | os.PathLike | Sequence[str | os.PathLike]) -> list[tuple[str, str]]:
    """``(path, key)`` of every ``.npz`` under the sources, sorted by key, each real file once.

    A source is a directory (searched recursively), a glob pattern (``**`` allowed) or a file. The
    key is the path relative to the directory (or to the pattern's fixed leading folders).
    """
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    found: dict[str, str] = {}
    real: set[str] = set()  # real paths taken so far (one per file, however many sources reach it)
    keys: dict[str, str] = {}  # key -> path
    for src in [os.fspath(x) for x in sources]:
        if os.path.isdir(src):
            base, hits = src, [p for p in walk(src) if p.endswith(".npz")]
        elif any(ch in src for ch in "*?["):
            parts = src.replace(os.sep, "/").split("/")
            fixed = next(i for i, p in enumerate(parts) if any(ch in p for ch in "*?["))
            base = "/".join(parts[:fixed]) or os.curdir
            rx = _glob_regex("/".join(parts[fixed:]))
            hits = [p for p in walk(base) if rx.match(_rel(p, base))] if os.path.isdir(base) else []
        elif os.path.isfile(src):
            base, hits = os.path.dirname(src) or os.curdir, [src]
        else:
            raise FileNotFoundError(f"no such file or directory: {src}")
        if not hits:
            raise FileNotFoundError(f"no .npz files in {src}" if os.path.isdir(src) else f"no files match {src}")
        for p in hits:
            key = _rel(p, base)
            rp = os.path.realpath(p)
            if rp in real:
                continue
            if key in keys:
                raise InputError(f"{keys[key]} and {p} have the same key {key!r} (the path relative to their "
                                 f"folder): give their common parent folder instead, or evaluate them separately")
            found[p] = key
            keys[key] = p
            real.add(rp)
    return sorted(found.items(), key=lambda item: item[1])


# --- templates --------------------------------------------------------------------------------------


def split_array(template: str) -> tuple[str, str | None]:
    """``"a/{stem}.npz:probs"`` -> ``("a/{stem}.npz", "probs")``; other templates have no array."""
    m = re.fullmatch(r"(.*\.npz):([^/\\:]+)", template, re.S)
    return (m.group(1), m.group(2)) if m else (template, None)


def parse_templates(items: Sequence[str]) -> dict[str, str]:
    """``["logits=P/{stem}.npy", "labels=G/{stem}.png"]`` -> ``{input: template}`` (order kept)."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, template = item.partition("=")
        if not sep or not name or not template:
            raise InputError(f"--input takes NAME=TEMPLATE (e.g. labels='gt/{{stem}}.png'); got {item!r}")
        if name in out:
            raise InputError(f"--input {name} given twice")
        out[name] = template
    first_name, first = next(iter(out.items()))
    if split_array(first)[0].count(STEM) != 1:
        raise InputError(f"--input {first_name}: the first template must hold {STEM} once; got {first!r}")
    for name, template in out.items():
        if STEM not in template:
            raise InputError(f"--input {name}: a template must hold {STEM}; got {template!r}")
    return out


def template_samples(templates: Mapping[str, str]) -> list[Sample]:
    """The samples named by templates: one per stem that the first template matches, sorted."""
    items = [(name, *split_array(t)) for name, t in templates.items()]
    _, first, _ = items[0]
    prefix, suffix = first.split(STEM)
    base = os.path.dirname(prefix) or os.curdir
    head = prefix[len(os.path.dirname(prefix)):].lstrip("/" + os.sep)
    if not os.path.isdir(base):
        raise FileNotFoundError(f"no such directory: {base} (from --input {items[0][0]}={templates[items[0][0]]})")
    rx = re.compile(re.escape(head.replace(os.sep, "/")) + "(.+)" + re.escape(suffix.replace(os.sep, "/")) + r"\Z", re.S)
    stems = sorted({m.group(1) for p in walk(base) if (m := rx.match(_rel(p, base)))})
    if not stems:
        raise FileNotFoundError(f"no files match {first}")
    return [
        Sample(stem, tuple(Source(name, path.replace(STEM, stem), array) for name, path, array in items))
        for stem in stems
    ]


def find_samples(
    sources: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    *,
    templates: Mapping[str, str] | None = None,
    shard: tuple[int, int] | None = None,
) -> list[Sample]:
    """The samples of a run, sorted by key: whole ``.npz`` archives under ``sources``, or the stems
    of ``templates`` (``{input: "dir/{stem}.ext"}``); with ``shard = (i, n)`` only those of shard i."""
    if (sources is None or sources == []) == (not templates):
        raise InputError("give either .npz sources or --input NAME=TEMPLATE templates (not both)")
    if templates:
        samples = template_samples(templates)
    else:
        assert sources is not None
        samples = [Sample(key, (Source(ALL_INPUTS, path),)) for path, key in npz_files(sources)]
    return [s for s in samples if in_shard(s.key, shard)]


# --- sharding ---------------------------------------------------------------------------------------


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/4"`` -> ``(2, 4)``: shard 2 of 4, 1-based."""
    i, sep, n = text.partition("/")
    try:
        index, count = int(i), int(n)
    except ValueError:
        index = count = 0
    if not sep or count < 1 or not 1 <= index <= count:
        raise InputError(f"shard takes I/N with 1 <= I <= N (e.g. 1/4); got {text!r}")
    return index, count


def in_shard(key: str, shard: tuple[int, int] | None) -> bool:
    """Whether the sample with this key belongs to ``shard = (i, n)`` (sha1 of the key, mod n)."""
    if shard is None:
        return True
    index, count = shard
    return int.from_bytes(hashlib.sha1(key.encode()).digest()[:8], "big") % count == index - 1


# --- reading ----------------------------------------------------------------------------------------


def _why(e: BaseException) -> str:
    """One line for a damaged-file exception (numpy's header parser raises bare tokenizer errors)."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    text = lines[0] if lines else type(e).__name__
    return f"{type(e).__name__}: {text}" if text.startswith("(") or text == type(e).__name__ else text


def read_npz(path: str, names: Mapping[str, str]) -> dict[str, np.ndarray]:
    """Arrays ``{input: archive[array]}`` of one ``.npz``; ValueError with a one-line reason otherwise."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if not hasattr(data, "files"):
                raise InputError(f"{path}: a .npy array, not an .npz archive")
            missing = [n + (f" (as {k})" if k != n else "") for n, k in names.items() if k not in data.files]
            if missing:
                have = ", ".join(data.files) or "none"
                raise InputError(f"missing input(s) {', '.join(missing)}; the file has arrays {have}")
            out = {}
            for n, k in names.items():
                try:
                    out[n] = data[k]
                except Exception as e:  # zipfile CRC, zlib, numpy header errors
                    raise InputError(f"not a readable .npz file: array {k!r} is damaged ({_why(e)})") from None
            return out
    except InputError:
        raise
    except FileNotFoundError:
        raise InputError(f"no such file: {path}") from None
    except Exception as e:  # zipfile, zlib, numpy format errors: all mean an unreadable file
        raise InputError(f"not a readable .npz file: {_why(e)}") from None


def read_image(path: str) -> np.ndarray:
    """A single-channel image as an array: class ids for 8/16-bit grayscale and palette images (a
    palette image gives its indices), floats for float TIFFs. A ``.tif`` Pillow cannot open, or one
    of several pages (a ``(C, H, W)`` score stack), is read by tifffile."""
    from PIL import Image, UnidentifiedImageError

    tif = path.lower().endswith((".tif", ".tiff"))
    try:
        with Image.open(path) as img:
            if not (tif and getattr(img, "n_frames", 1) > 1):
                if img.mode not in ("L", "P", "I", "I;16", "I;16B", "I;16L", "F", "1"):
                    raise InputError(f"{path}: a {img.mode} image; class-id masks are single-channel (L, P, I;16)")
                arr = np.asarray(img)
                return arr.astype(np.uint8) if img.mode == "1" else arr
    except (UnidentifiedImageError, OSError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        if not tif:
            raise InputError(f"{path}: not a readable image ({_why(e)})") from None
    try:
        import tifffile
    except ImportError:
        raise InputError(f"{path}: Pillow cannot read this TIFF; install tifffile (pip install 'lossgraph[eval]')") from None
    try:
        return tifffile.imread(path)
    except Exception as e:  # tifffile raises several types for damaged files
        raise InputError(f"{path}: not a readable TIFF ({_why(e)})") from None


def read_source(src: Source) -> np.ndarray:
    """The array of one template source (``.npy``, ``.npz[:array]``, image)."""
    if not os.path.exists(src.path):
        raise InputError(f"missing {src.input} file {src.path}")
    low = src.path.lower()
    if low.endswith(".npy"):
        try:
            return np.load(src.path, allow_pickle=False)
        except Exception as e:  # numpy raises ValueError/EOFError/OSError for damaged files
            raise InputError(f"{src.path}: not a readable .npy file ({_why(e)})") from None
    if low.endswith(".npz"):
        if src.array is not None:
            return read_npz(src.path, {src.input: src.array})[src.input]
        with np.load(src.path, allow_pickle=False) as data:
            files = list(data.files)
        key = src.input if src.input in files or len(files) != 1 else files[0]
        return read_npz(src.path, {src.input: key})[src.input]
    if low.endswith(IMAGE_EXTS):
        return read_image(src.path)
    raise InputError(f"{src.path}: unknown format; use .npy, .npz, .png, .tif")


def read_sample(sample: Sample, input_names: Sequence[str], mapping: Mapping[str, str] | None = None) -> dict[str, np.ndarray]:
    """``{input: array}`` of a sample, as stored (no cast): every input from its source file(s)."""
    first = sample.sources[0]
    if first.input == ALL_INPUTS:
        mapping = mapping or {}
        return read_npz(first.path, {n: mapping.get(n, n) for n in input_names})
    arrays = {src.input: read_source(src) for src in sample.sources}
    missing = [n for n in input_names if n not in arrays]
    if missing:
        raise InputError(f"no --input for graph input(s) {', '.join(missing)}; the graph takes {', '.join(input_names)}")
    return arrays
