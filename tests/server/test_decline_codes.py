"""One decline vocabulary (issue 15): :class:`nfcpay.declines.DeclineCode` is every code the
server answers, and nothing else.

- The server's source is scanned: each decline it can produce is a ``Failure`` whose code is
  written ``DeclineCode.<MEMBER>`` (a bare string, an f-string, a variable or an unknown
  member fails), and every member is produced somewhere.
- The tables of real requests in ``test_authorization.py`` (in-process) and
  ``acceptance/test_declines.py`` (a server process) provoke every member with one real
  request each and check that no case expects a code outside the enum.
- README's "Decline codes" table is the enum's ``#:`` lines, in order.
"""

from __future__ import annotations

import ast
import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import nfcpay
from nfcpay.declines import DeclineCode
from nfcpay.server.services.rules import Failure

PACKAGE = Path(nfcpay.__file__).parent
SERVER = PACKAGE / "server"
README = PACKAGE.parent / "README.md"
MEMBERS = DeclineCode.__members__


@dataclass
class Scan:
    #: member name → the places that produce it (``path:line``)
    produced: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    #: places that produce a decline code other than as ``DeclineCode.<MEMBER>``
    wrong: list[str] = field(default_factory=list)


def _callee(call: ast.Call) -> str | None:
    func = call.func
    return func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)


def _member(node: ast.expr) -> str | None:
    """``X`` for ``DeclineCode.X``, else None."""
    if (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "DeclineCode"
    ):
        return node.attr
    return None


def _is_text(node: ast.expr | None) -> bool:
    return isinstance(node, ast.JoinedStr) or (
        isinstance(node, ast.Constant) and isinstance(node.value, str)
    )


#: Calls that make a decline: ``Failure(code, ...)``, a ``fail(code, ...)`` helper, and
#: ``replace(failure, code=...)``.
PRODUCERS = ("Failure", "fail", "replace")


def _code_argument(call: ast.Call) -> ast.expr | None:
    """The decline code a producing call is given, if any."""
    given = {kw.arg: kw.value for kw in call.keywords}
    if _callee(call) != "replace" and call.args:
        return call.args[0]
    return given.get("code")


def scan(source: str, where: str, into: Scan | None = None) -> Scan:
    found = into or Scan()
    for node in ast.walk(ast.parse(source)):
        place = f"{where}:{getattr(node, 'lineno', '?')}"
        name = _member(node) if isinstance(node, ast.expr) else None
        if name is not None and name not in MEMBERS:
            found.wrong.append(f"{place}: DeclineCode.{name} is not a member")
        if isinstance(node, ast.Call) and _callee(node) in PRODUCERS:
            code = _code_argument(node)
            if code is None:
                continue
            name = _member(code)
            if name is None:
                found.wrong.append(f"{place}: code {ast.unparse(code)} is not DeclineCode.<MEMBER>")
            elif name in MEMBERS:
                found.produced[name].append(place)
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if (
                    isinstance(key, ast.Constant)
                    and key.value == "decline_code"
                    and _is_text(value)
                ):
                    found.wrong.append(
                        f"{place}: decline_code {ast.unparse(value)} is a bare string"
                    )
        elif isinstance(node, ast.keyword) and node.arg == "decline_code" and _is_text(node.value):
            found.wrong.append(f"{place}: decline_code={ast.unparse(node.value)} is a bare string")
    return found


def scan_server() -> Scan:
    found = Scan()
    for path in sorted(SERVER.rglob("*.py")):
        scan(path.read_text(), str(path.relative_to(PACKAGE.parent)), found)
    return found


def test_every_decline_the_server_produces_is_a_member() -> None:
    assert scan_server().wrong == []


def test_every_member_is_produced_by_a_server_rule() -> None:
    produced = scan_server().produced
    assert sorted(set(MEMBERS) - set(produced)) == [], "members no rule produces"


def test_no_package_names_a_code_outside_the_enum() -> None:
    wrong = [
        line
        for path in sorted(PACKAGE.rglob("*.py"))
        for line in scan(path.read_text(), path.name).wrong
        if "is not a member" in line
    ]
    assert wrong == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('Failure("grant_expired", "late")', "code 'grant_expired' is not DeclineCode.<MEMBER>"),
        ('check.fail(f"grant_{x}", "late")', "code f'grant_{x}' is not DeclineCode.<MEMBER>"),
        ("Failure(code, 'late')", "code code is not DeclineCode.<MEMBER>"),
        ("Failure(DeclineCode.GRANT_LATE, 'late')", "DeclineCode.GRANT_LATE is not a member"),
        ("replace(failure, code='x')", "code 'x' is not DeclineCode.<MEMBER>"),
        ('{"decline_code": "grant_late"}', "decline_code 'grant_late' is a bare string"),
        ("dict(decline_code=f'{x}')", "decline_code=f'{x}' is a bare string"),
        ("Failure(DeclineCode.GRANT_EXPIRED, 'late')", None),
        ("Failure(message='late', code=DeclineCode.NO_USES_LEFT)", None),
    ],
)
def test_the_scan_sees_a_code_outside_the_enum(source: str, expected: str | None) -> None:
    found = scan(source, "x.py")
    assert [line.split(": ", 1)[1] for line in found.wrong] == ([expected] if expected else [])


def test_the_scan_counts_what_it_produces() -> None:
    found = scan("Failure(DeclineCode.GRANT_EXPIRED, 'a')\nFailure(DeclineCode.BAD, 'b')", "x.py")
    assert dict(found.produced) == {"GRANT_EXPIRED": ["x.py:1"]}
    assert found.wrong == ["x.py:2: DeclineCode.BAD is not a member"]


def test_a_failure_takes_only_a_member() -> None:
    assert Failure(DeclineCode.GRANT_EXPIRED, "late").code == "grant_expired"
    with pytest.raises(TypeError, match="not a DeclineCode"):
        Failure("grant_expired", "late")  # type: ignore[arg-type]


def test_values_are_the_wire_strings() -> None:
    for name, member in MEMBERS.items():
        assert member == name.lower() == str(member) == f"{member}"
        assert json.dumps({"decline_code": member}) == f'{{"decline_code": "{name.lower()}"}}'


def when_lines() -> list[tuple[str, str]]:
    """(code, when) for each member, from the one ``#:`` line above it in declines.py."""
    path = PACKAGE / "declines.py"
    lines = path.read_text().splitlines()
    enum = next(
        node
        for node in ast.parse(path.read_text()).body
        if isinstance(node, ast.ClassDef) and node.name == "DeclineCode"
    )
    out = []
    for node in enum.body:
        if isinstance(node, ast.Assign):
            (target,) = node.targets
            above, second = lines[node.lineno - 2].strip(), lines[node.lineno - 3].strip()
            assert above.startswith("#: "), f"{ast.unparse(target)} has no #: line saying when"
            assert not second.startswith("#:"), f"{ast.unparse(target)}: say when in ONE line"
            assert isinstance(node.value, ast.Constant)
            out.append((str(node.value.value), above.removeprefix("#: ")))
    return out


def test_every_member_says_when_in_one_line() -> None:
    assert [code for code, _ in when_lines()] == [member.value for member in DeclineCode]


def readme_table() -> str:
    rows = "".join(f"| `{code}` | {when} |\n" for code, when in when_lines())
    return f"| code | when |\n|---|---|\n{rows}"


def test_readme_table_is_the_enum() -> None:
    text = README.read_text()
    match = re.search(r"^### Decline codes\n(.*?)(?=^#)", text, re.MULTILINE | re.DOTALL)
    assert match, "README has no '### Decline codes' section"
    table = "".join(line + "\n" for line in match.group(1).splitlines() if line.startswith("|"))
    assert table == readme_table(), f"README's decline codes should read:\n\n{readme_table()}"
