"""Policy documents from YAML files and folders, validated together: all of them or none."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import msgspec
import yaml

from mesh.policy.decode import parse
from mesh.policy.problem import Problem
from mesh.policy.service import Service
from mesh.policy.validate import Sourced, validate
from policies.safe_yaml import PolicyLoader

MAX_FILE_BYTES = 1 << 20
SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True, slots=True)
class Loaded:
    """What a load found; `documents` is empty whenever there is any error."""

    documents: tuple[Sourced, ...]
    errors: tuple[Problem, ...]
    warnings: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not self.errors


def load(
    *paths: str | os.PathLike[str], defaults: Service, max_file_bytes: int = MAX_FILE_BYTES
) -> Loaded:
    """Every document in `paths`: files, and *.yaml / *.yml under folders, in sorted order.

    `defaults` (settings-made) fills what Service documents leave out, for the checks.
    Paths that hold no document at all are an error: a typo, not an empty policy set.
    """
    sourced: list[Sourced] = []
    problems: list[Problem] = []
    for file in _files(paths, problems):
        try:
            with open(file, "rb") as stream:
                data = stream.read(max_file_bytes + 1)
        except OSError as exc:
            problems.append(_trouble(str(file), None, f"cannot read: {exc.strerror}"))
            continue
        _parse(data, str(file), max_file_bytes, defaults, sourced, problems)
    if not sourced and not problems:
        where = ", ".join(map(str, paths))
        message = "no policy documents (folders are searched for *.yaml and *.yml files)"
        problems.append(_trouble(where, None, message))
    return _finish(sourced, problems)


def load_text(
    text: str | bytes, *, defaults: Service, file: str = "<text>", max_bytes: int = MAX_FILE_BYTES
) -> Loaded:
    """Documents from YAML text (standard input, a test), checked exactly like a file."""
    sourced: list[Sourced] = []
    problems: list[Problem] = []
    data = text.encode() if isinstance(text, str) else text
    _parse(data, file, max_bytes, defaults, sourced, problems)
    return _finish(sourced, problems)


def _finish(sourced: list[Sourced], problems: list[Problem]) -> Loaded:
    errors, warnings = validate(sourced)
    problems.extend(errors)
    return Loaded(() if problems else tuple(sourced), tuple(problems), tuple(warnings))


def _files(paths: Iterable[str | os.PathLike[str]], problems: list[Problem]) -> list[Path]:
    found: list[Path] = []
    for given in map(Path, paths):
        if given.is_dir():
            found.extend(sorted(_tree(given)))
        elif given.is_file():
            found.append(given)
        else:
            problems.append(_trouble(str(given), None, "no such file or folder"))
    unique: dict[Path, Path] = {}  # a file named twice (itself and in its folder) loads once
    for file in found:
        unique.setdefault(file.resolve(), file)
    return list(unique.values())


def _tree(folder: Path) -> Iterable[Path]:
    """Policy files under `folder`, skipping hidden files and folders (.git, editor files)."""
    for root, folders, names in os.walk(folder):
        folders[:] = [name for name in folders if not name.startswith(".")]
        for name in names:
            if name.endswith(SUFFIXES) and not name.startswith("."):
                yield Path(root, name)


def _parse(
    data: bytes,
    file: str,
    limit: int,
    defaults: Service,
    sourced: list[Sourced],
    problems: list[Problem],
) -> None:
    if len(data) > limit:
        problems.append(_trouble(file, None, f"larger than {limit} bytes"))
        return
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        problems.append(_trouble(file, None, f"not UTF-8 text (byte {exc.start})"))
        return
    index = 0
    try:
        for obj in yaml.load_all(text, Loader=PolicyLoader):
            if obj is not None:  # an empty document, as after a final `---`
                result = parse(obj, defaults, file=file, doc_index=index)
                if isinstance(result, Problem):
                    problems.append(result)
                else:
                    sourced.append(Sourced(file, index, result, obj))
            index += 1
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        what = "; ".join(part for part in (exc.context, exc.problem) if part)
        problems.append(_trouble(file, index, f"invalid YAML: {what}{where}"))
    except (yaml.YAMLError, ValueError) as exc:  # ValueError: an int of over 4300 digits
        problems.append(_trouble(file, index, f"invalid YAML: {exc}"))


def _trouble(file: str, doc_index: int | None, message: str) -> Problem:
    return Problem(file=file, doc_index=doc_index, path="", value=msgspec.UNSET, message=message)
