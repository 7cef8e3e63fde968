"""HTML report for domain experts: one page to judge every verdict by looking.

Use :class:`ReportPlugin` from pytest (the core registers it for ``--xai-report``), or
:func:`write_report` directly on a list of rows of the data contract.
"""

from __future__ import annotations

from .model import Report, build_report
from .plugin import ReportPlugin
from .render import write_report

__all__ = ["Report", "ReportPlugin", "build_report", "write_report"]
