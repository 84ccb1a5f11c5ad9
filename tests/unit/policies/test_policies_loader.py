"""policies.loader: YAML files and folders load safely, with precise errors, all or nothing."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from factories import service_defaults

from mesh.policy.model import Route, Service
from policies.loader import MAX_FILE_BYTES, load, load_text
from policies.safe_yaml import MAX_DEPTH

DEFAULTS = service_defaults()

HELLO = """\
kind: Route
name: hello
match: {hosts: [hello.example.com], path_prefix: /hello}
to: [{service: hello-service}]
---
kind: Service
name: hello-service
timeouts: {connect: 1s, request: 5s}
balance: {algorithm: least_response_time}
retries: {attempts: 2, on: [connect-failure, refused, 503]}
"""


def write(folder: Path, name: str, text: str | bytes) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def test_the_hello_example_loads() -> None:
    loaded = load_text(HELLO, defaults=DEFAULTS)
    assert loaded.ok
    assert [type(item.document) for item in loaded.documents] == [Route, Service]
    service = loaded.documents[1].document
    assert isinstance(service, Service)
    # `on` is a plain key here, not YAML 1.1's boolean True.
    assert service.retries.on == ("connect-failure", "refused", 503)
    assert (service.timeouts.connect, service.timeouts.request) == (1.0, 5.0)


def test_folders_load_recursively_in_sorted_order_skipping_hidden_and_other_files(
    tmp_path: Path,
) -> None:
    write(tmp_path, "b.yaml", "kind: Service\nname: b\n")
    write(tmp_path, "a.yml", "kind: Service\nname: a1\n---\n---\nkind: Service\nname: a2\n")
    write(tmp_path, "sub/c.yaml", "kind: Service\nname: c\n")
    write(tmp_path, "notes.txt", "kind: nonsense")
    write(tmp_path, ".hidden.yaml", "kind: nonsense")
    write(tmp_path, ".git/x.yaml", "kind: nonsense")
    loaded = load(tmp_path, defaults=DEFAULTS)
    assert loaded.ok, loaded.errors
    found = [(Path(i.file).name, i.doc_index, i.document.name) for i in loaded.documents]
    assert found == [("a.yml", 0, "a1"), ("a.yml", 2, "a2"), ("b.yaml", 0, "b"), ("c.yaml", 0, "c")]


def test_files_and_folders_mix_and_a_file_named_twice_loads_once(tmp_path: Path) -> None:
    single = write(tmp_path, "one.yaml", "kind: Service\nname: one\n")
    other = write(tmp_path / "x", "two.txt", "kind: Service\nname: two\n")
    loaded = load(tmp_path, single, str(other), defaults=DEFAULTS)
    assert loaded.ok, loaded.errors
    assert [i.document.name for i in loaded.documents] == ["one", "two"]


def test_a_missing_path_is_an_error(tmp_path: Path) -> None:
    loaded = load(tmp_path / "nope", defaults=DEFAULTS)
    assert [(p.doc_index, p.message) for p in loaded.errors] == [(None, "no such file or folder")]


def test_one_bad_document_means_no_documents(tmp_path: Path) -> None:
    write(tmp_path, "good.yaml", HELLO)
    write(
        tmp_path,
        "bad.yaml",
        "kind: Service\nname: s\n---\nkind: Service\nname: t\nretries: {attempts: 99}\n",
    )
    loaded = load(tmp_path, defaults=DEFAULTS)
    assert not loaded.ok
    assert loaded.documents == ()
    [error] = loaded.errors
    assert (Path(error.file).name, error.doc_index, error.path, error.value) == (
        "bad.yaml",
        1,
        "retries.attempts",
        99,
    )
    assert str(error).endswith(
        "bad.yaml[1] retries.attempts = 99: expected an integer from 0 to 10"
    )


def test_duplicate_names_across_files_are_errors_and_unknown_services_warn(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "kind: Route\nname: r\nto: [{service: ghost}]\n")
    write(tmp_path, "b.yaml", "kind: Route\nname: r\nto: [{service: ghost}]\n")
    loaded = load(tmp_path, defaults=DEFAULTS)
    assert [(Path(p.file).name, p.path) for p in loaded.errors] == [("b.yaml", "name")]
    assert "first defined in" in loaded.errors[0].message
    assert {p.path for p in loaded.warnings} == {"to[0].service"}


def test_warnings_alone_keep_the_documents() -> None:
    loaded = load_text("kind: Route\nname: r\nto: [{service: ghost}]\n", defaults=DEFAULTS)
    assert loaded.ok
    assert len(loaded.documents) == 1
    assert [p.value for p in loaded.warnings] == ["ghost"]


BILLION_LAUGHS = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
"""


@pytest.mark.parametrize(
    ("text", "doc_index", "path", "message"),
    [
        (BILLION_LAUGHS, 0, "", "anchors and aliases are not allowed (line 1, column 4)"),
        ("kind: Service\nname: &n s\n", 0, "", "anchors and aliases are not allowed"),
        (
            "a: " + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5),
            0,
            "",
            f"nested deeper than {MAX_DEPTH}",
        ),
        ("kind: Service\nname: a\nname: b\n", 0, "", "duplicate key 'name' (line 3, column 1)"),
        ("kind: Service\n<<: {name: a}\n", 0, "", "merge keys (<<) are not allowed"),
        ("? [a, b]\n: 1\n", 0, "", "keys must be plain names"),
        ("kind: Service\nname: !!python/object/apply:os.system [true]\n", 0, "", "constructor"),
        ("kind: Service\nname: !custom s\n", 0, "", "constructor for the tag '!custom'"),
        ("kind: Service\nname: [unclosed\n", 0, "", "invalid YAML"),
        ("kind: Service\nname: s\n---\nkind: Service\n  name: t\n", 1, "", "invalid YAML"),
        ("kind: Service\nname: s\nretries: {attempts: " + "9" * 5000 + "}\n", 0, "", "4300"),
        ("- kind: Service\n  name: s\n", 0, "", "expected a mapping with kind Route or Service"),
        ("just text\n", 0, "", "expected a mapping with kind"),
        ("42\n", 0, "", "expected a mapping with kind"),
        (
            "kind: Service\nname: s\nbalance: {zone_aware: yes}\n",
            0,
            "balance.zone_aware",
            "true or false",
        ),
        ("kind: Service\nname: 2024-01-01\n", None, "", ""),  # a date-like name stays text
        ("kind: Service\nname: s\ntimeouts: {connect: 1 sec}\n", 0, "timeouts.connect", "250ms"),
        (
            "kind: Service\nname: s\nretries: {on: [503, teapot]}\n",
            0,
            "retries.on[1]",
            "one of 5xx",
        ),
        (
            "kind: Route\nname: r\nmatch: {path_regex: '(a|aa)+$'}\nto: [{service: s}]\n",
            0,
            "match.path_regex",
            "regex rejected",
        ),
        ("kind: Route\nname: r\nto: [{service: s, weight: ten}]\n", 0, "to[0].weight", "integer"),
        ("kind: Route\nname: r\nto: [{service: s}]\nspec: {}\n", 0, "spec", "unknown field"),
    ],
)
def test_hostile_and_wrong_yaml_is_refused_precisely(
    text: str, doc_index: int | None, path: str, message: str
) -> None:
    loaded = load_text(text, file="p.yaml", defaults=DEFAULTS)
    if doc_index is None:
        assert loaded.ok, loaded.errors
        return
    assert loaded.documents == ()
    [error] = loaded.errors
    assert (error.file, error.doc_index, error.path) == ("p.yaml", doc_index, path)
    assert message in error.message


def test_a_10_mb_document_is_refused_unread(tmp_path: Path) -> None:
    big = write(tmp_path, "big.yaml", b"kind: Service\nname: s\nx: " + b"a" * 10_000_000 + b"\n")
    loaded = load(big, defaults=DEFAULTS)
    assert [(p.doc_index, p.message) for p in loaded.errors] == [
        (None, f"larger than {MAX_FILE_BYTES} bytes")
    ]
    assert not load_text("kind: Service\nname: s\n", max_bytes=10, defaults=DEFAULTS).ok


def test_non_utf8_files_are_refused(tmp_path: Path) -> None:
    loaded = load(
        write(tmp_path, "latin.yaml", "name: caf\xe9\n".encode("latin-1")), defaults=DEFAULTS
    )
    assert "not UTF-8" in loaded.errors[0].message
    assert loaded.errors[0].value is msgspec.UNSET


def test_a_byte_order_mark_is_fine() -> None:
    loaded = load_text("\ufeffkind: Service\nname: s\n".encode(), defaults=DEFAULTS)
    assert loaded.ok, loaded.errors
    assert [item.document.name for item in loaded.documents] == ["s"]


def test_folders_named_like_policy_files_are_walked_not_read(tmp_path: Path) -> None:
    write(tmp_path, "dir.yaml/x.yaml", "kind: Service\nname: inner\n")
    loaded = load(tmp_path, defaults=DEFAULTS)
    assert loaded.ok, loaded.errors
    assert [item.document.name for item in loaded.documents] == ["inner"]


@pytest.mark.parametrize(
    "files",
    [
        {"empty.yaml": ""},
        {"notes.yaml": "# nothing yet\n---\n"},
        {"README.md": "kind: Route\n"},
        {},
    ],
)
def test_paths_without_any_document_are_an_error(tmp_path: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        write(tmp_path, name, text)
    paths = [tmp_path / name for name in files if name.endswith(".yaml")] or [tmp_path]
    loaded = load(*paths, defaults=DEFAULTS)
    assert not loaded.ok
    [error] = loaded.errors
    assert error.message.startswith("no policy documents")
