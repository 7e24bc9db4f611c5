"""The README's "Lateness under load" examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _examples() -> list[str]:
    text = README.read_text()
    section = text.split("## Lateness under load", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_the_section_has_its_examples() -> None:
    assert len(_examples()) == 2


@pytest.mark.parametrize("index", [0, 1])
def test_readme_example_runs(index: int) -> None:
    exec(compile(_examples()[index], f"README.md example {index}", "exec"), {})
