"""tests/conftest.py's --golden option: without it the golden comparisons (tests/test_hls_*.py,
tests/test_rtl_*.py, tests marked golden) are deselected, not skipped, and the summary says how
many and how to run them; with it everything runs."""
from pathlib import Path

pytest_plugins = ["pytester"]


def test_golden_comparisons_run_only_with_the_option(pytester):
    pytester.makeconftest((Path(__file__).parent / "conftest.py").read_text())
    pytester.makepyfile(test_rtl_x="def test_a():\n    pass\n\ndef test_b():\n    pass\n",
                        test_hls_y="def test_c():\n    pass\n",
                        test_plain="import pytest\n\ndef test_d():\n    pass\n\n"
                                   "@pytest.mark.golden\ndef test_e():\n    pass\n")
    res = pytester.runpytest("--strict-markers")
    res.assert_outcomes(passed=1, deselected=4)
    res.stdout.fnmatch_lines(["*4 golden comparisons (golden model vs C / RTL simulation) were deselected; "
                              "run them with `pytest tests/ --golden` (or `make test`)*"])
    assert "skipped" not in res.stdout.str()
    res = pytester.runpytest("--strict-markers", "--golden")
    res.assert_outcomes(passed=5)
    assert "deselected" not in res.stdout.str()
    # the marker is registered
    res = pytester.runpytest("--markers")
    res.stdout.fnmatch_lines(["@pytest.mark.golden: compares a golden model with C or RTL simulation*"])
