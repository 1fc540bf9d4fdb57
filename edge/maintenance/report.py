"""The doctor's findings as text for a person at the terminal."""

from __future__ import annotations

from edge.maintenance.findings import ERROR, OK, SKIPPED, WARNING, Check

MARKS = {OK: "ok", WARNING: "warning", ERROR: "ERROR", SKIPPED: "skipped"}


def doctor_failed(checks: list[Check]) -> bool:
    return any(check.status == ERROR for check in checks)


def report_lines(checks: list[Check]) -> list[str]:
    """The doctor's findings for a person: one line each, the advice under a problem."""
    lines = []
    for check in checks:
        finding = check.finding
        lines.append(
            f"{MARKS[finding.status]:<8} {check.label.zh} {check.label.en}: {finding.message}"
        )
        if finding.advice and finding.status in (WARNING, ERROR):
            lines.append(f"{'':<8} 处理 what to do: {finding.advice}")
    errors = sum(check.status == ERROR for check in checks)
    warnings = sum(check.status == WARNING for check in checks)
    if errors or warnings:
        lines.append(
            f"{errors} 个错误，{warnings} 个警告 / {errors} error(s), {warnings} warning(s)"
        )
    else:
        lines.append("一切正常 / all checks passed")
    return lines
