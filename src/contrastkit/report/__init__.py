"""The HTML report of a run (``contrastkit report RUN_DIR``), written at the end of ``fit``."""

from __future__ import annotations

from contrastkit.report.build import REPORT_NAME, build_report, write_report

__all__ = ["REPORT_NAME", "build_report", "write_report"]
