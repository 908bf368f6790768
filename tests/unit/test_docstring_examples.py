"""The `>>>` examples in the code's docstrings run, so none of them drifts from what the code does."""

from __future__ import annotations

import doctest
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = re.compile(r"^\s*>>> (?!#)", re.MULTILINE)  # (a commented-out example shows usage only)
MODULES = sorted(
    str(path.relative_to(ROOT).with_suffix("")).replace("/", ".")
    for package in ("config", "operators", "schemas", "flows", "reader", "scripts")
    for path in (ROOT / package).rglob("*.py")
    if EXAMPLE.search(path.read_text()))


def test_examples_are_found():
    assert "operators.reorder" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0, (
        f"{result.failed} of {result.attempted} examples in {name} failed")
