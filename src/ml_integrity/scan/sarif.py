"""SARIF 2.1.0 output of a scan report, for GitHub code scanning (CLI and Action)."""

from __future__ import annotations

from pathlib import Path

from ml_integrity.scan.scanner import Finding, ScanReport

__all__ = ["sarif"]


def sarif(report: ScanReport) -> dict[str, object]:
    """A SARIF 2.1.0 log of the findings, for GitHub code scanning."""
    from ml_integrity import __version__
    from ml_integrity.scan.scanner import RULES

    rule_ids = list(RULES)
    results = []
    for x in report.findings:
        text = x.message + (f" (in {x.member})" if x.member else "") + f". Hint: {x.hint}."
        results.append(
            {
                "ruleId": x.kind,
                "ruleIndex": rule_ids.index(x.kind),
                "level": "error",
                "message": {"text": text},
                "locations": [
                    {
                        "physicalLocation": {
                            "artifactLocation": _artifact(x.path),
                            "region": {"startLine": 1},
                        },
                        **(
                            {"logicalLocations": [{"fullyQualifiedName": x.member}]}
                            if x.member
                            else {}
                        ),
                    }
                ],
                "partialFingerprints": {"mlIntegrityFinding/v1": _fingerprint(x)},
            }
        )
    return {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "ml-integrity",
                        "version": __version__,
                        "informationUri": "https://github.com/ml-integrity/ml-integrity",
                        "rules": [
                            {
                                "id": rid,
                                "name": "".join(w.capitalize() for w in rid.split("-")),
                                "shortDescription": {"text": short},
                                "fullDescription": {"text": full},
                                "help": {"text": full},
                                "defaultConfiguration": {"level": "error"},
                                "properties": {"tags": ["security"]},
                            }
                            for rid, (short, full) in RULES.items()
                        ],
                    }
                },
                "results": results,
            }
        ],
    }


def _artifact(path: str) -> dict[str, str]:
    import urllib.parse

    p = Path(path)
    absolute = p.resolve()
    try:
        rel = absolute.relative_to(Path.cwd().resolve())
    except ValueError:
        return {"uri": absolute.as_uri()}
    return {"uri": urllib.parse.quote(rel.as_posix()), "uriBaseId": "%SRCROOT%"}


def _fingerprint(x: Finding) -> str:
    """Stable across runs over the same content: kind, file, container member (when
    there is one), and what was found (the detail, else the message)."""
    parts = [x.kind, x.path]
    if x.member:
        parts.append(x.member)
    parts.append(x.detail if x.detail is not None else x.message)
    return ":".join(parts)
