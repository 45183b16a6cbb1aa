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
