"""No import cycles between nvmsim's modules, counting imports inside functions too (a lazy
import that dodges a cycle is still a cycle in the design)."""

import ast
from pathlib import Path

import networkx as nx

SRC = Path(__file__).resolve().parents[1] / "src"


def _module(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _graph() -> nx.DiGraph:
    modules = {_module(p): p for p in (SRC / "nvmsim").rglob("*.py")}
    g = nx.DiGraph()
    g.add_nodes_from(modules)
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for t in targets:
                if t in modules and t != name and not name.startswith(f"{t}."):
                    g.add_edge(name, t)
    return g


def test_no_import_cycles():
    cycles = list(nx.simple_cycles(_graph()))
    assert not cycles, f"import cycles: {cycles[:5]}"


def test_lower_layers_never_import_higher_ones():
    g = _graph()
    low = ("nvmsim.devices", "nvmsim.crossbar", "nvmsim.nn", "nvmsim.training", "nvmsim.data")
    high = ("nvmsim.studies", "nvmsim.report", "nvmsim.cli")
    bad = [(a, b) for a, b in g.edges if a.startswith(low) and b.startswith(high)]
    assert not bad, bad
