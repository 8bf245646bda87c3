"""The self-contained HTML report over run folders (reads run folders only)."""

from .html import build_report, report_sections

__all__ = ["build_report", "report_sections"]
