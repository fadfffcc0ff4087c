"""DVC stage `report`: figures and reports/report.md."""

from metahpo.reporting.report import report_stage
from metahpo.runtime import run_stage

if __name__ == "__main__":
    run_stage("report", report_stage)
