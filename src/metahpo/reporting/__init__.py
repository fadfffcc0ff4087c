"""The report: figures and ``reports/report.md`` from the other stages' outputs."""
