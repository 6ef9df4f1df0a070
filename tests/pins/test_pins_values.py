"""The numbers of the package, pinned: the quickstart table, Table 1 at smoke (and, marked slow,
quick) scale, the callbacks' logged values on a tiny run, the report's values, the metric
classes and ``evaluate_invariance`` on fixed weights.

Each case of ``pin_cases.py`` runs again and must give the values of its ``<case>.json``
(written by ``regenerate.py`` from commit f7e01f9): equal up to float32 rounding, the
tolerance of :func:`pin_cases.tolerances` (``rtol = 8·2⁻²⁴·terms``, ``terms`` the float32
summation behind the case's values), and printed cells exactly. A refactor that keeps the
behaviour passes; one that changes a number fails, naming the key and both values.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pin_cases import CASES, mismatches, tolerances

HERE = Path(__file__).resolve().parent


def check(name: str, root: Path) -> None:
    function, terms, _ = CASES[name]
    pinned = json.loads((HERE / f"{name}.json").read_text())
    assert pinned["terms"] == terms, f"{name}.json was written with terms={pinned['terms']}"
    result = function(root)
    values, text = (result["values"], result["text"]) if "values" in result else (result, {})
    rtol, atol = tolerances(terms, pinned["values"])
    problems = mismatches(values, pinned["values"], rtol, atol)
    problems += mismatches(text, pinned["text"], 0.0, 0.0)
    assert not problems, (f"{name}: {len(problems)} differences from {name}.json "
                          f"({len(pinned['values'])} values at rtol {rtol:.3g}, atol "
                          f"{atol:.3g}; {len(pinned['text'])} printed cells, exact):\n"
                          + "\n".join(problems))


@pytest.mark.parametrize("name", [name for name, (_, _, slow) in CASES.items() if not slow])
def test_values_are_the_pinned_ones(name, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.chdir(tmp_path)
    check(name, tmp_path)


@pytest.mark.slow
def test_quick_table1_values_are_the_pinned_ones(tmp_path, monkeypatch):
    """``genuine-table1 --quick`` (R4 and T3): minutes on two CPU cores."""
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.chdir(tmp_path)
    check("table1_quick", tmp_path)


def test_the_comparison_fails_on_a_changed_value():
    pinned = {"DI": 0.0170224718, "LI": 1e-16, "accuracy": 0.25, "cell": "0.4715"}
    rtol, atol = tolerances(256, pinned)
    assert mismatches(dict(pinned), pinned, rtol, atol) == []
    assert mismatches({**pinned, "DI": 0.0170224718 * (1 + rtol / 2)}, pinned, rtol, atol) == []
    changed = {**pinned, "DI": 0.0170224718 * (1 + 2 * rtol), "cell": "0.4716"}
    assert [line.split(":")[0] for line in mismatches(changed, pinned, rtol, atol)] == [
        "DI", "cell"]
    assert mismatches({"DI": 0.0170224718}, pinned, rtol, atol)[0] == "LI: pinned, not measured"
