"""What the Action writes for the runner: workflow commands, outputs, summary (unit level)."""

from __future__ import annotations

import io
from pathlib import Path

from ml_integrity.action.output import (
    MAX_ANNOTATIONS,
    Runner,
    escape_data,
    escape_property,
    format_output,
    one_line,
)

from .conftest import ANNOTATION, parse_outputs, unescape


def test_property_values_are_escaped_and_round_trip() -> None:
    name = "models/a,b:c%d\r\n::warning::x.bin"
    escaped = escape_property(name)
    assert not set(",:\r\n") & set(escaped)
    assert unescape(escaped) == name
    assert escape_data("50% done\nnext") == "50%25 done%0Anext"


def test_annotation_is_one_line_with_its_properties() -> None:
    out = io.StringIO()
    runner = Runner(out, None, None)
    runner.annotate("error", "bad\nthing", file="a,b.bin", title="t: x")
    (line,) = out.getvalue().splitlines()
    m = ANNOTATION.match(line)
    assert m is not None
    assert m.group(2) == "file=a%2Cb.bin,title=t%3A x"
    assert unescape(m.group(3)) == "bad\nthing"


def test_at_most_ten_annotations_per_level_and_the_rest_counted() -> None:
    out = io.StringIO()
    runner = Runner(out, None, None)
    for i in range(13):
        runner.annotate("error", f"e{i}")
    for i in range(2):
        runner.annotate("warning", f"w{i}")
    lines = out.getvalue().splitlines()
    assert len([x for x in lines if x.startswith("::error")]) == MAX_ANNOTATIONS
    assert len([x for x in lines if x.startswith("::warning")]) == 2
    assert runner.dropped == {"error": 3, "warning": 0, "notice": 0}


def test_multiline_output_uses_a_fresh_delimiter(tmp_path: Path) -> None:
    value = "line 1\nghadelimiter_x\nline 3"
    record = format_output("report", value)
    head = record.splitlines()[0]
    assert head.startswith("report<<ghadelimiter_") and head != "report<<ghadelimiter_x"
    assert record != format_output("report", value)  # random each time
    out = tmp_path / "out"
    runner = Runner(io.StringIO(), out, None)
    runner.set_output("report", value)
    runner.set_output("verified", "true")
    runner.flush()
    assert parse_outputs(out.read_text()) == {"report": value, "verified": "true"}


def test_summary_is_capped_below_githubs_limit(tmp_path: Path) -> None:
    summary = tmp_path / "summary"
    runner = Runner(io.StringIO(), None, summary)
    runner.add_summary("x" * 2_000_000)
    runner.flush()
    text = summary.read_text()
    assert len(text.encode()) < 1024 * 1024
    assert "summary truncated" in text


def test_log_lines_cannot_start_a_workflow_command() -> None:
    out = io.StringIO()
    Runner(out, None, None).log("file a\n::error::forged")
    assert out.getvalue().count("\n") == 1
    assert one_line("a\tb") == "a\\tb"
