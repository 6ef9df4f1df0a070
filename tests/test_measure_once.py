"""Measure once: the orbit forward and the drift blend are called only where they belong.

Values are aggregated by ``invreg.metrics`` (``OrbitMetrics``, ``DriftMetrics``, ...), which
run the orbit forward themselves. Code elsewhere in ``invreg/`` that calls
``orbit_logits(``, ``orbit_forward(`` or the drift ``blend(`` is measuring by hand beside the
metric classes: it should feed a metric (or ``invreg.evaluation.evaluate_invariance``), or
draw its drifted inputs from ``invreg.data.drift``.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "invreg"

#: the functions guarded: the orbit forward (invreg.functional.invariance) and the drift blend
#: (invreg.functional.drift, re-exported by invreg.data.drift)
GUARDED = frozenset({"orbit_logits", "orbit_forward", "blend"})

#: folders of invreg/ whose job includes these calls
ALLOWED = {
    "functional": "the formulas' home: orbit_forward itself, orbit_logits over it, G-EED's "
                  "hooked forward, blend",
    "metrics": "the aggregation path: OrbitMetrics.update_from_model, DriftMetrics' blend",
    "data": "drifted inputs (invreg.data.drift.drifted)",
    "losses": "the invariance errors of training take the orbit forward's outputs",
    "modules": "training runs the orbit forward of its loss",
}

#: files outside ALLOWED that still call a guarded function, and why they are left as they are
KNOWN_EXCEPTIONS = {
    # invariance_deviations / max_invariance_deviation: the largest deviation of a model's
    # outputs per orbit element, a maximum for pass/fail checks; nothing is averaged or logged
    "models/checks.py": {"orbit_logits"},
    # assert_invariant compares the orbit outputs sample by sample with tolerances (a test
    # helper for users' models); nothing is averaged or logged
    "testing.py": {"orbit_logits"},
}


def guarded_calls(source: str) -> set[str]:
    """Names of the guarded functions that ``source`` calls, as ``f(...)`` or ``m.f(...)``,
    also under an alias from ``from ... import f as g``. Docstrings and comments do not count."""
    tree = ast.parse(source)
    aliases = {name: name for name in GUARDED}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if alias.name in GUARDED and alias.asname:
                    aliases[alias.asname] = alias.name
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if name in aliases:
                found.add(aliases[name])
    return found


def package_calls() -> dict[str, set[str]]:
    """``{path relative to invreg/: guarded names called}`` for every file outside ALLOWED."""
    calls = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] in ALLOWED:
            continue
        found = guarded_calls(path.read_text(encoding="utf-8"))
        if found:
            calls[relative.as_posix()] = found
    return calls


def test_the_scanner_sees_calls_aliases_and_not_docstrings():
    source = '''
"""orbit_logits(model, x, group) in a docstring is no call."""
from invreg import functional as IF
from invreg.functional.drift import blend as mix

def measure(model, x, group, d):
    # orbit_forward(model, x, group) in a comment is no call
    return IF.orbit_logits(model, x, group), mix(x, d, 0.5)
'''
    assert guarded_calls(source) == {"orbit_logits", "blend"}
    assert guarded_calls("from invreg.functional import orbit_forward as f\nf(m, x, g)\n") == {
        "orbit_forward"
    }
    assert guarded_calls("orbit = metrics.update_from_model(model, x, y)\n") == set()


def test_the_allowed_folders_exist():
    assert all((PACKAGE / folder).is_dir() for folder in ALLOWED), sorted(ALLOWED)


def test_orbit_forward_and_drift_blend_only_where_they_belong():
    calls = package_calls()
    unexpected = {path: names - KNOWN_EXCEPTIONS.get(path, set())
                  for path, names in calls.items()}
    unexpected = {path: sorted(names) for path, names in unexpected.items() if names}
    assert not unexpected, (
        "measure through invreg.metrics (OrbitMetrics, DriftMetrics, LayerInvariance) or "
        "invreg.evaluation.evaluate_invariance, and draw drifted inputs with "
        f"invreg.data.drift.drifted; called by hand in: {unexpected}"
    )


def test_every_known_exception_still_calls_what_it_is_excused_for():
    calls = package_calls()
    stale = {path: sorted(names - calls.get(path, set()))
             for path, names in KNOWN_EXCEPTIONS.items() if names - calls.get(path, set())}
    assert not stale, f"no longer called: remove from KNOWN_EXCEPTIONS: {stale}"
