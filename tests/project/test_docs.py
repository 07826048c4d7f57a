"""Every code block of docs/ runs as written, or is checked, in a test (issue 30, item 1).

How each kind of block is run or checked, and what its marker means, is in
``tests/project/blocks.py``. In short: Python programs and fragments run against a fresh
loopback sandbox and must exit 0; test files run under pytest-asyncio in strict mode and must
pass; shell commands parse with the command line's own parser; the error tree (``text``) is
checked against the classes by tests/decoding/test_errors.py. A block that cannot run says why
in its marker, and its test is skipped with that reason.
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
import shlex
from pathlib import Path

import pytest

from tests.project.blocks import ROOT, Block, blocks, check_run, run_python

DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
ALL = [b for page in PAGES for b in blocks(page)]
PYTHON = [b for b in ALL if b.lang == "python"]
CONSOLE = [b for b in ALL if b.lang == "console"]
PYTHON_MARKERS = re.compile(r"^(fragment|from examples/\w+\.py|requires \w+ \(.+\)|skip \(.+\))$")
CONSOLE_MARKER = re.compile(r"^parse only \((.+)\)$")


def test_every_block_is_of_a_kind_the_tests_know() -> None:
    assert len(PYTHON) >= 20 and len(CONSOLE) >= 4  # the extractor works
    assert {b.lang for b in ALL} <= {"python", "console", "text", "yaml", "promql"}, {
        b.id: b.lang for b in ALL
    }
    for b in PYTHON:
        assert b.marker is None or PYTHON_MARKERS.match(b.marker), (b.id, b.marker)
    for b in CONSOLE:  # never run: each says why
        assert b.marker is not None and CONSOLE_MARKER.match(b.marker), (b.id, b.marker)


@pytest.mark.parametrize("block", PYTHON, ids=lambda b: b.id)
def test_python_block_runs(block: Block, tmp_path: Path) -> None:
    marker = block.marker or ""
    if marker.startswith("skip"):
        pytest.skip(f"{block.id} is marked {marker}")
    if marker.startswith("requires ") and importlib.util.find_spec(marker.split()[1]) is None:
        pytest.skip(f"{block.id} {marker}: not installed here")
    if marker.startswith("from examples/"):
        example = (ROOT / marker.removeprefix("from ")).read_text(encoding="utf-8")
        assert block.code in example, f"{block.id} is no longer an excerpt of {marker}"
        return
    run = run_python(block, tmp_path)
    check_run(block, run)
    if "TANX_BASE_URL" in block.code or (marker == "fragment" and "await session." in block.code):
        assert run.exchange.requests, f"{block.id} never talked to the sandbox"
    if re.search(r"\.cancel(_many|_iter)?\(\s*order_ids", block.code):
        # Its cancels reached the sandbox and took effect there.
        assert run.exchange.order(run.order_ids[0]).state == "cancel", block.id


def console_commands(block: Block) -> list[list[str]]:
    """The commands of a console block: comments dropped, ``&&`` and ``|`` split."""
    commands: list[list[str]] = []
    for line in block.code.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        words: list[str] = []
        for word in [*lexer, "&&"]:
            if word in {"&&", "|", "||", ";"}:
                commands += [words] if words else []
                words = []
            else:
                words.append(word)
    return commands


def extras() -> set[str]:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    section = text[text.index("[project.optional-dependencies]") : text.index("[project.scripts]")]
    return set(re.findall(r"^(\w+) = \[", section, re.MULTILINE))


@pytest.mark.parametrize("block", CONSOLE, ids=lambda b: b.id)
def test_console_block_parses(block: Block) -> None:
    """Checked, not run (the block's marker says why): every command parses as its tool's own."""
    from tanx_async.cli._args import build_parser
    from tanx_async.testing.__main__ import build_parser as build_sandbox_parser

    for words in console_commands(block):
        if words[0] == "tanx-async":
            if words[1:] == ["--version"]:  # argparse prints it and exits 0
                with pytest.raises(SystemExit, match=r"^0$"):
                    build_parser().parse_args(words[1:])
            else:
                build_parser().parse_args(words[1:])  # a usage error exits 2: the test fails
        elif words[:3] == ["python", "-m", "tanx_async.testing"]:
            build_sandbox_parser().parse_args(words[3:])
        elif words[:3] == ["python", "-m", "tanx_async.conformance"]:
            from tanx_async.conformance.__main__ import build_parser as build_conformance_parser

            build_conformance_parser().parse_args(words[3:])
        elif words[:2] == ["pip", "install"]:
            for package in words[2:]:
                name, _, rest = package.partition("[")
                assert name in {"tanx-async", "pytest-asyncio"}, (block.id, package)
                assert set(filter(None, rest.rstrip("]").split(","))) <= extras(), (block.id, package)
        elif words[0] == "export":
            assert all(re.match(r"^TANX_[A-Z_]+=", w) for w in words[1:]), (block.id, words)
        elif words[0] != "jq":
            pytest.fail(f"{block.id}: no check for the command {words}")


YAML = [b for b in ALL if b.lang == "yaml"]
PROMQL = [b for b in ALL if b.lang == "promql"]


@pytest.mark.parametrize("block", YAML, ids=lambda b: b.id)
def test_yaml_block_parses(block: Block) -> None:
    yaml = pytest.importorskip("yaml")
    assert isinstance(yaml.safe_load(block.code), dict), block.id


def exposed_metric_names() -> set[str]:
    """The names OpenTelemetry's Prometheus exporter serves for tanx-async's instruments, each
    recorded once (the exporter's own naming: dots to underscores, units and ``_total``)."""
    pytest.importorskip("opentelemetry.exporter.prometheus")
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import MeterProvider
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.registry import REGISTRY

    from tanx_async.telemetry import Telemetry

    reader = PrometheusMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        telemetry = Telemetry("https://api.tanx.fi", meter_provider=provider)
        for name, instrument in vars(telemetry).items():
            if hasattr(instrument, "record"):
                instrument.record(0.01, {"docs": name})
            elif hasattr(instrument, "add"):
                instrument.add(1, {"docs": name})
        registry = CollectorRegistry()
        registry.register(reader._collector)
        text = generate_latest(registry).decode()
    finally:
        provider.shutdown()
        with contextlib.suppress(KeyError):
            REGISTRY.unregister(reader._collector)
    return {
        line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")
    }


@pytest.mark.parametrize("block", PROMQL, ids=lambda b: b.id)
def test_promql_block_names_what_the_exporter_serves(block: Block) -> None:
    """Its metrics are names the exporter serves; its labels (in ``by (...)`` and selectors)
    are attributes tanx_async.telemetry records, dots made underscores."""
    labels = {
        label
        for group in re.findall(r"by \(([^)]*)\)|\{([^}]*)\}", block.code)
        for part in group
        for label in re.findall(r"\b([a-z_]+)(?:\s*=|\s*,|\s*$)", part)
        if label != "le"
    }
    metrics = set(re.findall(r"\b(?:tanx|http_client)_[a-z_]+", block.code)) - labels
    assert metrics, block.id
    assert metrics <= exposed_metric_names(), (block.id, metrics - exposed_metric_names())
    source = (ROOT / "tanx_async" / "telemetry.py").read_text(encoding="utf-8")
    recorded = {key.replace(".", "_") for key in re.findall(r'"([a-z_]+(?:\.[a-z_]+)+)"', source)}
    assert labels <= recorded, (block.id, labels - recorded)
