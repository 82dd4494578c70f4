"""The evaluation report: what a model gets right and wrong on a labelled file, as report.json and one page.

Each task adapter gathers its gold answers, predictions and inputs (`Task.report`); the analyses here are plain
functions of those, and `page` renders them."""

from hftk.report.page import Example, Figure, Report, Section, Table, check_report_folder

__all__ = ["Example", "Figure", "Report", "Section", "Table", "check_report_folder"]
