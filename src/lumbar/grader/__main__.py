"""`python -m lumbar.grader train ...` = `lumbar grader train ...` (the same errors and exit
codes: `lumbar.cli.app.main`)."""

import sys

from lumbar.cli.app import main

sys.argv = ["lumbar", "grader", *sys.argv[1:]]
main()
