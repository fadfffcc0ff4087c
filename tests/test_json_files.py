"""The one JSON reader of the stages' inputs: every hostile text is one line naming the file and key."""

from __future__ import annotations

import pytest

from metahpo.errors import ArtifactError
from metahpo.json_files import (
    INTEGER,
    NULL,
    NUMBER,
    OBJECT,
    TEXT,
    Each,
    ListOf,
    Optional,
    load_json,
    load_json_object,
    parse_json,
    schema_problem,
)

HOSTILE = [
    ('{"a": ' + "1" * 5000 + "}", "not valid JSON (an integer of 5,000 digits (at most 30))"),
    ('{"a": [' + "1" * 31 + "]}", "an integer of 31 digits"),
    ('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}", "not valid JSON (nested more than 100 levels deep)"),
    ('{"a": ' + "{" * 0 + '{"b": ' * 150 + "1" + "}" * 150 + "}", ": nested more than 100 levels deep"),
    ('{"a": {"b": NaN}}', ": a.b: nan is not a finite number"),
    ('{"a": [1, -Infinity]}', ": a[1]: -inf is not a finite number"),
    ('{"a": 1e999}', ": a: inf is not a finite number"),
    ('{"a": 1, "a": 2}', "not valid JSON (key 'a' given twice in one object)"),
    (b'{"a": "caf\xe9"}', "not valid JSON (not UTF-8 text (byte 10 is 0xe9))"),
    (b"\xff\xfe{}", "not UTF-8"),
    ("", "not valid JSON (Expecting value: line 1 column 1 (char 0))"),
    ('{"a": 1', "not valid JSON"),
    ("[1, 2]", ": expected a JSON object, got list"),
    ("null", ": expected a JSON object, got null"),
]


@pytest.mark.parametrize(("text", "message"), HOSTILE, ids=[m[:40] for _, m in HOSTILE])
def test_hostile_json_is_one_line_naming_the_file(tmp_path, text, message):
    path = tmp_path / "x.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ArtifactError) as info:
        load_json_object(path, ArtifactError, "rerun it")
    line = str(info.value)
    assert line.startswith(f"{path}: ") and line.endswith("; rerun it") and message in line, line
    assert "\n" not in line and len(line) < 300


def test_unreadable_paths_are_named(tmp_path):
    with pytest.raises(ArtifactError, match=r"x.json: missing; rerun it$"):
        load_json_object(tmp_path / "x.json", ArtifactError, "rerun it")
    (tmp_path / "d.json").mkdir()
    with pytest.raises(ArtifactError, match=r"d.json: cannot read \(Is a directory\); rerun it$"):
        load_json_object(tmp_path / "d.json", ArtifactError, "rerun it")


def test_non_finite_numbers_are_kept_where_asked():
    assert str(parse_json("[NaN, Infinity]", finite=False)) == "[nan, inf]"
    with pytest.raises(ValueError, match="nan is not a finite number"):
        parse_json("[NaN]")


SCHEMA = {
    "trial": INTEGER,
    "objective": NUMBER,
    "setting": OBJECT,
    "note": Optional(TEXT),
    "splits": Each({"sha256": TEXT, "shape": ListOf(INTEGER)}),
    "learner": (TEXT, NULL),
}
GOOD = {"trial": 3, "objective": 0.5, "setting": {}, "splits": {"a": {"sha256": "x", "shape": [2]}}, "learner": None}


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"trial": True}, "trial: expected an integer, got true"),
        ({"trial": "3"}, 'trial: expected an integer, got "3"'),
        ({"objective": "0.5"}, 'objective: expected a number, got "0.5"'),
        ({"setting": []}, "setting: expected a JSON object, got list"),
        ({"note": 5}, "note: expected a text, got 5"),
        ({"splits": []}, "splits: expected a JSON object, got list"),
        ({"splits": {"a": {"sha256": 5, "shape": []}}}, "splits.a.sha256: expected a text, got 5"),
        ({"splits": {"a": {"sha256": "x", "shape": [1, 2.5]}}}, "splits.a.shape[1]: expected an integer, got 2.5"),
        ({"splits": {"a": {"sha256": "x", "shape": {}}}}, "splits.a.shape: expected a list, got dict"),
        ({"learner": 7}, "learner: expected a text or null, got 7"),
        ({"objective": None}, "objective: expected a number, got null"),
    ],
)
def test_schema_names_the_key_and_what_it_expected(change, problem):
    assert schema_problem(GOOD, SCHEMA) == ""
    assert schema_problem({**GOOD, **change}, SCHEMA) == problem
    missing = {k: v for k, v in GOOD.items() if k != "setting"}
    assert schema_problem(missing, SCHEMA) == "setting: missing"


def test_a_schema_problem_is_one_line_naming_the_file(tmp_path):
    path = tmp_path / "best.json"
    path.write_text('{"trial": "x"}')
    with pytest.raises(ArtifactError, match=r"best.json: trial: expected an integer, got \"x\"; rerun$"):
        load_json(path, ArtifactError, "rerun", {"trial": INTEGER})
