"""`python -m lumbar.grader train ...` = `lumbar grader train ...`."""

from lumbar.cli.grader import grader_app

grader_app(prog_name="python -m lumbar.grader")
