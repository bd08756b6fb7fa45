"""Class-names files of image sets. The format is detected from the content:

* one name per line, line number (0-based) = class index, e.g. `T-shirt/top`;
* name and index per line, as Places365's `categories_places365.txt`: `/a/airfield 0`;
  the name is kept as written (`/a/airfield`); labels may also use it without the
  `/a/` prefix (`airfield`) where that is unique;
* ImageNet's `LOC_synset_mapping.txt` / Caffe's `synset_words.txt`: `n01440764 tench, Tinca tinca`,
  index = line number. The class name is the first synonym (`tench`); where two synsets share
  it (ImageNet has two `crane`s and two `maillot`s) both become `name (wnid)`, e.g.
  `crane (n02012849)`, so that class names stay unique. Labels may name a class by wnid,
  by the full description, by the class name, or by the first synonym where unique;
* `imagenet_class_index.json` (`{"0": ["n01440764", "tench"], ...}`), same naming rule.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_SYNSET_LINE = re.compile(r"(n\d{8})\s+(\S.*)")


_NAME_INDEX_LINE = re.compile(r"(\S+)\s+(\d+)")


# --------------------------------------------------------------------------- flat validation layout


@dataclass(frozen=True)
class ClassTable:
    """A class-names file: the names in index order, and every spelling a labels file may use."""

    names: tuple[str, ...]
    aliases: dict[str, int]  # every accepted spelling of a class in a labels file -> index


def _unique_aliases(candidates: Sequence[tuple[str, int]]) -> dict[str, int]:
    """Alias -> index, dropping aliases that point at more than one class."""
    seen: dict[str, set[int]] = {}
    for alias, index in candidates:
        seen.setdefault(alias, set()).add(index)
    return {alias: next(iter(indices)) for alias, indices in seen.items() if len(indices) == 1}


def _synset_table(entries: Sequence[tuple[str, str]]) -> ClassTable:
    """(wnid, description) per class -> names: first synonym, `name (wnid)` where it repeats."""
    firsts = [description.split(",")[0].strip() for _, description in entries]
    counts: dict[str, int] = {}
    for first in firsts:
        counts[first] = counts.get(first, 0) + 1
    names = tuple(
        first if counts[first] == 1 else f"{first} ({wnid})"
        for first, (wnid, _) in zip(firsts, entries, strict=True)
    )
    candidates: list[tuple[str, int]] = []
    for index, ((wnid, description), name, first) in enumerate(zip(entries, names, firsts, strict=True)):
        candidates += [(name, index), (wnid, index), (description.strip(), index), (first, index)]
    aliases = _unique_aliases(candidates)
    aliases.update({name: index for index, name in enumerate(names)})
    return ClassTable(names, aliases)


def read_class_names(path: Path) -> ClassTable:
    """Parse a class-names file in any of the formats of the module docstring."""
    if not path.is_file():
        raise ValueError(f"class-names file {path} does not exist")
    if path.suffix.lower() == ".json":
        return _read_class_index_json(path)
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise ValueError(f"class-names file {path} is empty")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            raise ValueError(f"{path}:{number}: blank line in a class-names file")
    stripped = [line.strip() for line in lines]

    synsets = [_SYNSET_LINE.fullmatch(line) for line in stripped]
    if all(synsets):
        table = _synset_table([(m.group(1), m.group(2)) for m in synsets if m])
        _check_unique([m.group(1) for m in synsets if m], path, "wnid")
        return table

    name_index = [_NAME_INDEX_LINE.fullmatch(line) for line in stripped]
    if all(name_index):
        count = len(lines)
        names: list[str | None] = [None] * count
        for number, match in enumerate(name_index, start=1):
            assert match is not None
            name, index = match.group(1), int(match.group(2))
            if index >= count:
                raise ValueError(f"{path}:{number}: class index {index} out of range 0..{count - 1}")
            if names[index] is not None:
                raise ValueError(f"{path}:{number}: class index {index} given twice")
            names[index] = name
        final = tuple(name for name in names if name is not None)
        _check_unique(final, path, "class name")
        short = [(re.sub(r"^/[^/]/", "", name), index) for index, name in enumerate(final)]
        aliases = _unique_aliases(short)
        aliases.update({name: index for index, name in enumerate(final)})
        return ClassTable(final, aliases)

    _check_unique(stripped, path, "class name")
    return ClassTable(tuple(stripped), {name: index for index, name in enumerate(stripped)})


def _read_class_index_json(path: Path) -> ClassTable:
    """`imagenet_class_index.json`: {"0": ["n01440764", "tench"], ...}."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        entries = [data[str(index)] for index in range(len(data))]
        pairs = [(str(wnid), str(name)) for wnid, name in entries]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"class-names file {path} is not an imagenet_class_index.json mapping "
            f'{{"0": ["n01440764", "tench"], ...}}: {error}'
        ) from error
    if not pairs:
        raise ValueError(f"class-names file {path} is empty")
    _check_unique([wnid for wnid, _ in pairs], path, "wnid")
    return _synset_table(pairs)


def _check_unique(values: Sequence[str], path: Path, what: str) -> None:
    first: dict[str, int] = {}
    for number, value in enumerate(values, start=1):
        if value in first:
            raise ValueError(f"{path}:{number}: {what} {value!r} repeats line {first[value]}")
        first[value] = number
