"""The progress bar: rate and time left on a terminal, nothing otherwise, nothing for no work."""

from __future__ import annotations

import io

import pytest

from ml_integrity.cli._common import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_bar_with_rate_and_eta(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    out = Terminal()
    with Progress("hashing", stream=out) as progress:
        for done in range(0, 2_000_000_001, 100_000_000):
            progress(done, 2_000_000_000)
    text = out.getvalue()
    assert "hashing" in text
    assert "/s" in text  # the rate
    assert "eta" in text
    assert "GB" in text  # done/total, human-sized


@pytest.mark.parametrize("ci", ["1", "true"])
def test_ci_and_pipes_stay_silent(monkeypatch: pytest.MonkeyPatch, ci: str) -> None:
    monkeypatch.setenv("CI", ci)
    out = Terminal()
    with Progress("hashing", stream=out) as progress:
        progress(5, 10)
    assert out.getvalue() == ""
    monkeypatch.delenv("CI")
    pipe = io.StringIO()
    with Progress("hashing", stream=pipe) as progress:
        progress(5, 10)
    assert pipe.getvalue() == ""


def test_no_bar_when_there_is_nothing_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    # a cached verify reports (0, 0): no "0.00/0.00 GB" bar
    monkeypatch.delenv("CI", raising=False)
    out = Terminal()
    with Progress("verifying", stream=out) as progress:
        progress(0, 0)
    assert out.getvalue() == ""
