"""SI is measured one way: through ``invreg.metrics.SaliencyInvarianceSimilarity``.

The saliency functions that make up SI (the orbit maps, their post-processing, the cosine
and the functional SI) are called only in ``invreg/functional`` (where they are defined) and
``invreg/metrics`` (the metric); everything else creates and updates the metric.
"""

import re
from pathlib import Path

import invreg

SI_STEPS = ("orbit_saliency", "orbit_saliency_stages", "postprocess_saliency",
            "saliency_similarity", "saliency_invariance")
CALL = re.compile(rf"(?<![\w.])(?:\w+\.)?({'|'.join(SI_STEPS)})\(")
DEFINITION = re.compile(rf"\bdef ({'|'.join(SI_STEPS)})\(")

PACKAGE = Path(invreg.__file__).parent
ALLOWED = [
    PACKAGE / "functional",
    PACKAGE / "metrics",
]


def si_calls(path: Path, package: Path = PACKAGE) -> list[str]:
    """``"<file>:<line> <name>"`` for each call of an SI step in ``path`` (not definitions)."""
    text = path.read_text(encoding="utf-8")
    return [f"{path.relative_to(package.parent)}:{text.count(chr(10), 0, m.start()) + 1} "
            f"{m.group(1)}" for m in CALL.finditer(text) if not DEFINITION.match(
                text, max(0, m.start() - 4))]


def test_si_is_computed_only_in_functional_and_metrics():
    outside = [call for path in sorted(PACKAGE.rglob("*.py"))
               if not any(path.is_relative_to(folder) for folder in ALLOWED)
               for call in si_calls(path)]
    assert not outside, (
        f"SI computed by hand outside invreg/functional and invreg/metrics: {outside}; "
        f"measure it with invreg.metrics.SaliencyInvarianceSimilarity (per_sample=True for "
        f"per-sample values, keep_maps=R for the maps of a figure)"
    )


def test_the_scan_finds_calls_and_skips_definitions(tmp_path):
    # the metric's own calls are found (a broken pattern would pass vacuously) ...
    found = si_calls(PACKAGE / "metrics" / "saliency.py")
    assert {"orbit_saliency_stages", "saliency_similarity"} <= {c.split()[-1] for c in found}
    # ... and so is a call through a module alias, but not a definition or a mention
    sample = tmp_path / "invreg" / "sample.py"
    sample.parent.mkdir()
    sample.write_text("def saliency_similarity(maps):\n    pass\n"
                      "x = IF.saliency_invariance(model, x, y, g)\n"
                      "# see :func:`orbit_saliency` and my_orbit_saliency(x)\n")
    assert si_calls(sample, sample.parent) == ["invreg/sample.py:3 saliency_invariance"]
