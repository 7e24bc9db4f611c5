"""The README's Metrics examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import bridge.metrics

README = Path(__file__).resolve().parents[1] / "README.md"


def metrics_examples() -> list[str]:
    text = README.read_text()
    section = text.split("## Metrics\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


def test_the_section_has_one_example_per_exporter() -> None:
    examples = metrics_examples()
    assert len(examples) == 3
    assert "enable_prometheus" in examples[0]
    assert "histograms=exporter" in examples[1]  # pre-aggregated
    assert "enable_opentelemetry" in examples[2] and "histograms=" not in examples[2]  # replay


@pytest.mark.parametrize(
    "index", [0, 1, 2], ids=["prometheus", "opentelemetry", "opentelemetry-replay"]
)
def test_readme_example_runs(index: int) -> None:
    namespace: dict[str, object] = {"__name__": "readme_example"}
    try:
        exec(compile(metrics_examples()[index], f"README.md metrics example {index}", "exec"),
             namespace)  # fmt: skip
    finally:
        bridge.metrics.disable()
        provider = namespace.get("provider")
        if provider is not None:
            provider.shutdown()  # type: ignore[attr-defined]
        server = namespace.get("server")
        if server is not None:
            server.shutdown()  # type: ignore[attr-defined]
            server.server_close()  # type: ignore[attr-defined]
