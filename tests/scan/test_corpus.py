"""Every corpus case, in both pickle modes, with its expected verdict and reason."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from ml_integrity.scan.scanner import Finding, ScanPolicy, scan_file

from .make_corpus import Case, Expect


def _check(report_findings: Sequence[Finding], verdict: str, expect: Expect, describe: str) -> None:
    assert verdict == expect.verdict, f"{describe}: {verdict} {report_findings}"
    if expect.kind is None:
        return
    matching = [f for f in report_findings if f.kind == expect.kind]
    assert matching, f"{describe}: no {expect.kind} finding in {report_findings}"
    if expect.text is not None:
        assert any(
            expect.text in " ".join(filter(None, (f.message, f.detail, f.member))) for f in matching
        ), f"{describe}: {expect.text!r} not in {matching}"


@pytest.mark.parametrize("mode", ["block", "allowlist"])
def test_corpus(corpus: tuple[Path, dict[str, Case]], mode: str) -> None:
    root, cases = corpus
    failures = []
    for case in cases.values():
        policy = ScanPolicy(pickle=mode, **case.policy)  # type: ignore[arg-type]
        report = scan_file(root / case.path, policy)
        expect = case.block if mode == "block" else case.allowlist
        try:
            _check(report.findings, report.verdict, expect, f"{case.name} ({case.path})")
        except AssertionError as exc:
            failures.append(str(exc))
    assert not failures, "\n".join(failures)
