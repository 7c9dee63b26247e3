"""docs/api.md's examples run as doctests, so the API documentation cannot drift from the code."""

import doctest
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def test_api_doc_examples_run(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    if not DOC.is_file():
        pytest.skip("docs/api.md is not part of this checkout")
    result = doctest.testfile(str(DOC), module_relative=False, verbose=False,
                              optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 20
    assert result.failed == 0
