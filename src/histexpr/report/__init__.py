"""``histexpr report``: one self-contained HTML page of a run or model directory.

:mod:`histexpr.report.builder` gathers the sections; :mod:`histexpr.report.page`
renders them as HTML.
"""

from histexpr.report.builder import (
    default_report_path,
    summarize_data,
    write_data_summary,
    write_report,
)

__all__ = ["default_report_path", "summarize_data", "write_data_summary", "write_report"]
