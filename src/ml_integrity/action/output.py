"""What the Action tells the runner: log lines, annotations, ``$GITHUB_OUTPUT``, the summary.

Workflow commands (``::error``...) are escaped, at most 10 annotations of each
level are shown per step (GitHub's limit; the rest are counted in the summary),
multi-line outputs use a random heredoc delimiter, and the job summary stays
below GitHub's 1 MiB. :class:`VerifyReport` is what verify mode found; the
writers here turn it into annotations, SARIF, the JSON report and the summary.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

from ml_integrity import __version__
from ml_integrity.action.inputs import Context, Inputs, relative, resolve_path

if TYPE_CHECKING:
    from ml_integrity.scan.scanner import ScanReport


MAX_ANNOTATIONS = 10
"""GitHub shows at most 10 annotations of each level per step."""
SUMMARY_LIMIT = 1_000_000
"""``$GITHUB_STEP_SUMMARY`` may hold at most 1 MiB per step; we stay below."""
OUTPUT_LIMIT = 900_000
"""An output value may hold at most 1 MB; a larger report goes only to the file."""
SUMMARY_ROWS = 200
"""At most this many artifacts are listed in the summary table."""
Level = Literal["error", "warning", "notice"]


# --- workflow commands and file commands ---------------------------------------------


def escape_data(value: str) -> str:
    """Escape the message of a workflow command (``::error ...::MESSAGE``)."""
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(value: str) -> str:
    """Escape a property value of a workflow command (``file=``, ``title=``)."""
    return escape_data(value).replace(":", "%3A").replace(",", "%2C")


def one_line(value: str) -> str:
    """``value`` with control characters made visible, for plain log lines.

    Names of files come from the repository under test; a newline in one must
    not start a workflow command of its own.
    """
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in value)


class Runner:
    """What the Action tells the runner: log lines, annotations, outputs, summary."""

    def __init__(self, stdout: IO[str], output_file: Path | None, summary_file: Path | None):
        self.stdout = stdout
        self.output_file = output_file
        self.summary_file = summary_file
        self.shown: dict[str, int] = {"error": 0, "warning": 0, "notice": 0}
        self.dropped: dict[str, int] = {"error": 0, "warning": 0, "notice": 0}
        self.summary: list[str] = []
        self.outputs: dict[str, str] = {}

    def log(self, line: str) -> None:
        self.stdout.write(one_line(line) + "\n")
        self.stdout.flush()

    def annotate(
        self,
        level: Level,
        message: str,
        *,
        file: str | None = None,
        title: str | None = None,
        line: int | None = None,
    ) -> bool:
        """One annotation, if the per-step budget allows; returns whether it was shown."""
        if self.shown[level] >= MAX_ANNOTATIONS:
            self.dropped[level] += 1
            return False
        self.shown[level] += 1
        props = []
        if file:
            props.append(f"file={escape_property(file)}")
            if line is not None:
                props.append(f"line={line}")
        if title:
            props.append(f"title={escape_property(title)}")
        head = f"::{level} {','.join(props)}" if props else f"::{level}"
        self.stdout.write(f"{head}::{escape_data(message)}\n")
        self.stdout.flush()
        return True

    def group(self, title: str) -> contextlib.AbstractContextManager[None]:
        @contextlib.contextmanager
        def grouped() -> Iterator[None]:
            self.stdout.write(f"::group::{escape_data(title)}\n")
            self.stdout.flush()
            try:
                yield
            finally:
                self.stdout.write("::endgroup::\n")
                self.stdout.flush()

        return grouped()

    def set_output(self, name: str, value: str) -> None:
        self.outputs[name] = value

    def add_summary(self, markdown: str) -> None:
        self.summary.append(markdown)

    def flush(self) -> None:
        """Write the outputs and the job summary (once, at the end)."""
        if self.output_file is not None and self.outputs:
            text = "".join(format_output(k, v) for k, v in self.outputs.items())
            with open(self.output_file, "a", encoding="utf-8") as f:
                f.write(text)
        if self.summary_file is not None and self.summary:
            text = "\n".join(self.summary) + "\n"
            if len(text.encode("utf-8")) > SUMMARY_LIMIT:
                cut = text.encode("utf-8")[: SUMMARY_LIMIT - 200].decode("utf-8", "ignore")
                text = cut + "\n\n_(summary truncated: GitHub allows 1 MiB; see the report)_\n"
            with open(self.summary_file, "a", encoding="utf-8") as f:
                f.write(text)


def format_output(name: str, value: str) -> str:
    """One ``$GITHUB_OUTPUT`` record; multi-line values use a random heredoc delimiter."""
    if "\n" not in value and "\r" not in value:
        return f"{name}={value}\n"
    while True:
        delimiter = f"ghadelimiter_{uuid.uuid4().hex}"
        if delimiter not in value:
            return f"{name}<<{delimiter}\n{value}\n{delimiter}\n"


# --- the report --------------------------------------------------------------------------


@dataclass
class Row:
    """One artifact in the verdict: its signature status and its scan result."""

    path: str
    size: int | None = None
    sha256: str | None = None
    signature: str = "-"
    """``ok``, ``refused`` or ``-`` (not checked)."""
    reason: str | None = None
    scan: str | None = None
    findings: list[dict[str, object]] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "path": self.path,
            "size": self.size,
            "sha256": self.sha256,
            "signature": self.signature,
            "reason": self.reason,
            "scan": self.scan,
            "findings": self.findings,
        }


@dataclass
class VerifyReport:
    target: str
    trust: list[str]
    rows: dict[str, Row] = field(default_factory=dict)
    signers: list[str] = field(default_factory=list)
    signature_error: str | None = None
    scan_scope: str = "none"
    scan: ScanReport | None = None
    notes: list[str] = field(default_factory=list)

    def row(self, path: str) -> Row:
        if path not in self.rows:
            self.rows[path] = Row(path)
        return self.rows[path]

    @property
    def signatures_ok(self) -> bool:
        return self.signature_error is None and all(
            r.signature != "refused" for r in self.rows.values()
        )

    @property
    def scan_ok(self) -> bool:
        return self.scan is None or self.scan.ok

    @property
    def ok(self) -> bool:
        return self.signatures_ok and self.scan_ok

    def to_json(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "mode": "verify",
            "version": __version__,
            "target": self.target,
            "trust": self.trust,
            "signers": self.signers,
            "signature_error": self.signature_error,
            "scan_scope": self.scan_scope,
            "scan_policy": self.scan.policy.to_json() if self.scan else None,
            "notes": self.notes,
            "artifacts": [self.rows[p].to_json() for p in sorted(self.rows)],
        }


# --- verify: what the runner shows ---------------------------------------------------------


def report_verify(ctx: Context, inputs: Inputs, report: VerifyReport, runner: Runner) -> None:
    for row in sorted(report.rows.values(), key=lambda r: r.path):
        if row.signature == "refused":
            runner.annotate(
                "error",
                f"{row.reason or 'not covered by a valid signature'}",
                file=None if os.path.isabs(row.path) else row.path,
                title="ml-integrity: not signed by a trusted signer",
            )
        for finding in row.findings:
            member = f" (in {finding['member']})" if finding.get("member") else ""
            runner.annotate(
                "error",
                f"{finding['message']}{member}. Hint: {finding['hint']}",
                file=row.path,
                title=f"ml-integrity: {finding['kind']}",
            )
    if report.signature_error and not any(r.signature == "refused" for r in report.rows.values()):
        runner.annotate("error", report.signature_error, title="ml-integrity: verification failed")
    for note in report.notes:
        runner.annotate("warning", note, title="ml-integrity")

    doc = report.to_json()
    if inputs.sarif_file and report.scan is not None:
        sarif_path = resolve_path(ctx, inputs.sarif_file)
        _write_sarif(sarif_path, report)
        runner.set_output("sarif-path", relative(ctx, sarif_path))
        doc["sarif"] = relative(ctx, sarif_path)
    write_report(ctx, runner, doc)
    runner.set_output("verified", "true" if report.ok else "false")
    runner.add_summary(_verify_summary(report, runner))


def write_report(ctx: Context, runner: Runner, doc: dict[str, object]) -> None:
    from ml_integrity.core.signing import write_atomic

    text = json.dumps(doc, indent=2, sort_keys=True)
    path = ctx.temp_dir("out") / "report.json"
    write_atomic(path, text.encode() + b"\n")
    runner.set_output("report-path", str(path))
    if len(text.encode()) > OUTPUT_LIMIT:
        short = {k: v for k, v in doc.items() if k != "artifacts"}
        short["artifacts_truncated"] = True
        text = json.dumps(short, indent=2, sort_keys=True)
    runner.set_output("report", text)


def _write_sarif(path: Path, report: VerifyReport) -> None:
    from ml_integrity.core.signing import write_atomic
    from ml_integrity.scan.sarif import sarif

    assert report.scan is not None
    doc: dict[str, Any] = sarif(report.scan)
    run = doc["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    rules.append(
        {
            "id": "not-signed",
            "name": "NotSigned",
            "shortDescription": {"text": "Artifact not covered by a trusted signature"},
            "fullDescription": {
                "text": "The artifact's digest is not in a manifest signed by a signer the "
                "workflow trusts: it was changed, added without signing, or signed by "
                "someone else."
            },
            "help": {"text": "Sign the change (ml-integrity sign-repo) or revert it."},
            "defaultConfiguration": {"level": "error"},
            "properties": {"tags": ["security", "supply-chain"]},
        }
    )
    index = len(rules) - 1
    for row in sorted(report.rows.values(), key=lambda r: r.path):
        if row.signature != "refused":
            continue
        run["results"].append(
            {
                "ruleId": "not-signed",
                "ruleIndex": index,
                "level": "error",
                "message": {"text": row.reason or "not covered by a trusted signature"},
                "locations": [
                    {
                        "physicalLocation": {
                            "artifactLocation": {"uri": _uri(row.path), "uriBaseId": "%SRCROOT%"},
                            "region": {"startLine": 1},
                        }
                    }
                ],
                "partialFingerprints": {"mlIntegrityNotSigned/v1": f"{row.path}:{row.sha256}"},
            }
        )
    write_atomic(path, (json.dumps(doc, indent=2) + "\n").encode())


def _uri(path: str) -> str:
    import urllib.parse

    return urllib.parse.quote(path)


def md(text: str) -> str:
    """``text`` safe inside a Markdown table cell."""
    return one_line(text).replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def size_text(n: int | None) -> str:
    if n is None:
        return ""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:,} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return str(n)


def _verify_summary(report: VerifyReport, runner: Runner) -> str:
    verdict = "✅ verified" if report.ok else "❌ not verified"
    lines = [f"## ml-integrity: {verdict}", ""]
    lines.append(f"- **Target:** {md(report.target)}")
    lines.append(
        "- **Signed by:** " + (", ".join(md(s) for s in report.signers) or "no trusted signer")
    )
    lines.append(
        "- **Trust (from the Action's inputs):** " + "; ".join(md(t) for t in report.trust)
    )
    if report.signature_error:
        lines.append(f"- **Signature check:** {md(report.signature_error)}")
    if report.scan is not None:
        pol = report.scan.policy
        bad = sum(1 for f in report.scan.files if not f.ok)
        lines.append(
            f"- **Scan:** {len(report.scan.files)} file(s), {report.scan_scope}; "
            f"{bad} unsafe or not scanned (pickle policy: {pol.pickle})"
        )
    else:
        lines.append("- **Scan:** off")
    lines.extend(f"- **Note:** {md(note)}" for note in report.notes)
    dropped = runner.dropped["error"] + runner.dropped["warning"]
    if dropped:
        lines.append(
            f"- **{dropped} more problem(s) are not annotated** (GitHub shows at most "
            f"{MAX_ANNOTATIONS} errors and {MAX_ANNOTATIONS} warnings per step); "
            "all are listed below."
        )
    lines += [
        "",
        "| Artifact | Size | SHA-256 | Signature | Scan | Details |",
        "|---|---|---|---|---|---|",
    ]
    rows = sorted(
        report.rows.values(), key=lambda r: (r.signature != "refused" and not r.findings, r.path)
    )
    for row in rows[:SUMMARY_ROWS]:
        sig = {"ok": "✅ signed", "refused": "❌ refused", "-": ""}.get(
            row.signature, row.signature
        )
        scan = {"safe": "✅ safe", "unsafe": "❌ unsafe", "not-scanned": "❌ not scanned"}.get(
            row.scan or "", row.scan or ""
        )
        details = row.reason or ""
        if row.findings:
            details = "; ".join(str(f["message"]) for f in row.findings[:3])
        sha = f"`{row.sha256[:12]}`" if row.sha256 else ""
        lines.append(
            f"| `{md(row.path)}` | {size_text(row.size)} | {sha} | {sig} | {scan} | {md(details)} |"
        )
    if len(rows) > SUMMARY_ROWS:
        lines.append(f"\n_{len(rows) - SUMMARY_ROWS} more artifact(s) in the report output._")
    return "\n".join(lines)
