"""Bad policy input stays bad input: a clear error naming the file, line or field, never a
traceback, a hang or gigabytes of memory."""

from __future__ import annotations

from pathlib import Path

import pytest

from quiesce.errors import PolicyError
from quiesce.policy import load_policy, parse_policy

#: Six levels of nine: ~530,000 strings once expanded (issue 9: 229 bytes, 4 s, 267 MB).
ALIAS_BOMB = (
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
    "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
    "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
    "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
    "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
    "g: [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n"
)

GROUP = """\
version: 1
name: p
groups:
  g:
    consistency: crash
    {field}
    members: [{{name: m, provider: local, volumes: [/srv/m]}}]
"""


def problem_of(text: str) -> str:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, path="p.yaml")
    (problem,) = caught.value.problems
    return problem


def test_an_alias_bomb_is_refused_at_the_first_anchor() -> None:
    problem = problem_of(ALIAS_BOMB)
    assert problem.startswith("p.yaml: line 1: refused: YAML anchors and aliases")


def test_a_self_referencing_anchor_is_refused() -> None:
    assert "anchors and aliases" in problem_of("a: &a [*a]\n")


def test_deep_nesting_is_refused_not_a_recursion_error() -> None:
    assert "nested deeper than 32 levels" in problem_of("a: " + "[" * 5000 + "]" * 5000)
    block = "".join(" " * i + "k:\n" for i in range(100))
    assert "line 32: refused: is nested deeper than 32 levels" in problem_of(block)


def test_a_4300_digit_integer_is_refused_naming_the_line() -> None:
    problem = problem_of("version: 1\nname: p\nx: " + "9" * 4300 + "\n")
    assert (
        problem
        == "p.yaml: line 3: refused: an integer of 4300 digits is not a value a policy can hold"
    )


def test_too_many_values_are_refused() -> None:
    assert "more than 20000 values" in problem_of("a: [" + ",".join(["1"] * 30000) + "]\n")


def test_a_10_mb_policy_file_is_refused_by_its_size(tmp_path: Path) -> None:
    file = tmp_path / "big.yaml"
    file.write_bytes(b"version: 1\n" + b"# " + b"x" * (10 * 1024 * 1024) + b"\n")
    with pytest.raises(PolicyError) as caught:
        load_policy(file)
    (problem,) = caught.value.problems
    assert problem.startswith(f"{file}: the policy is larger than 524288 bytes")


@pytest.mark.parametrize(
    ("field", "named", "says"),
    [
        ("durability_timeout_seconds: .inf", "groups.g.durability_timeout_seconds", "finite"),
        ("durability_timeout_seconds: 1e30", "groups.g.durability_timeout_seconds", "604800"),
        ("max_freeze_seconds: .nan", "groups.g.max_freeze_seconds", "finite"),
        ("retention: {max_age_days: .inf}", "groups.g.retention.max_age_days", "finite"),
        ("retention: {max_age_days: 1e30}", "groups.g.retention.max_age_days", "36500"),
    ],
)
def test_infinite_and_huge_durations_are_refused_naming_the_field(
    field: str, named: str, says: str
) -> None:
    problem = problem_of(GROUP.format(field=field))
    assert f"line 6: {named}:" in problem
    assert says in problem


def test_a_folder_and_a_folder_inside_it_are_refused() -> None:
    text = GROUP.format(field="").replace("volumes: [/srv/m]", "volumes: [/srv/m, /srv/m/sub]")
    assert "volumes: /srv/m/sub is inside /srv/m" in problem_of(text)
    two = GROUP.format(field="").replace(
        "members: [{name: m, provider: local, volumes: [/srv/m]}]",
        "members: [{name: m, provider: local, volumes: [/srv]},"
        " {name: n, provider: local, volumes: [/srv/n]}]",
    )
    assert "/srv/n is inside /srv" in problem_of(two)
