"""nfcpay's packages import only downwards: a newcomer can read each layer knowing only the
ones below it. Lazy imports inside functions count too."""

from __future__ import annotations

import ast
from pathlib import Path

import nfcpay

ROOT = Path(nfcpay.__file__).parent

#: What each part may import besides itself. ``core`` is the top-level modules (errors,
#: money, split, crypto); ``__main__`` is the entry point.
ALLOWED = {
    "core": set(),
    "records": {"core"},
    "transport": {"core"},
    "client": {"core"},
    "server": {"core", "records"},
    "terminals": {"core", "records", "transport", "client"},
    # The local web pages (``nfcpay ui``): a terminal's face, beside the CLI.
    "ui": {"core", "records", "transport", "client", "terminals"},
    "cli": {"core", "records", "transport", "client", "terminals", "server", "ui"},
    # The harness tests and benchmarks share; nothing else in nfcpay imports it.
    "testing": {"core", "records", "transport", "client", "terminals", "server"},
    "__main__": {"cli"},
}


def part_of(module: str) -> str:
    """``nfcpay.terminals.bill`` → ``terminals``; ``nfcpay.money`` → ``core``."""
    if "." not in module:
        return "core"
    name = module.split(".")[1]
    if (ROOT / name).is_dir() or name in ("client", "__main__"):
        return name
    return "core"


def imports_of(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "nfcpay":
                found |= {f"nfcpay.{alias.name}" for alias in node.names}
            elif node.module.startswith("nfcpay."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("nfcpay.")}
    return found


def test_every_package_imports_only_the_layers_below_it() -> None:
    wrong = []
    for path in sorted(ROOT.rglob("*.py")):
        module = ".".join(("nfcpay", *path.relative_to(ROOT).with_suffix("").parts))
        here = part_of(module.removesuffix(".__init__"))
        for target in imports_of(path):
            there = part_of(target)
            if there != here and there not in ALLOWED[here] and target != "nfcpay.__version__":
                wrong.append(f"{module} ({here}) imports {target} ({there})")
    assert not wrong, "\n".join(wrong)


def test_the_check_sees_a_wrong_import() -> None:
    assert part_of("nfcpay.terminals.bill") == "terminals" and part_of("nfcpay.money") == "core"
    assert "terminals" not in ALLOWED["transport"]  # transport cannot reach up


def test_test_modules_share_helpers_only_through_tests_support() -> None:
    """A test module imports no other test module and no conftest (pytest imports those
    under names of its own); what tests share lives in ``tests/support``."""
    tests_root = Path(__file__).resolve().parents[1]
    wrong = []
    for path in sorted(tests_root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level > 0:
                wrong.append(f"{path.relative_to(tests_root)}: a relative import")
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tests"):
                module = node.module or ""
                if module == "tests" or not module.startswith("tests.support"):
                    wrong.append(f"{path.relative_to(tests_root)} imports from {module}")
    assert not wrong, "\n".join(wrong)
