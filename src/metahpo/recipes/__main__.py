"""``python -m metahpo.recipes NAME [key=value ...]``: write a recipe into params.yaml, checked as a stage checks it.

A command, above every layer as the stage scripts are: it imports :mod:`metahpo.search`, which registers the
learners' and the search's names and the rules that read them, so a result that a stage would refuse (an
unknown algorithm, a search method that does not run with the fidelity chosen) exits with code 2 and one line
per problem before params.yaml is written.
"""

import sys

import metahpo.search  # noqa: F401  (registers the names and rules every stage checks)
from metahpo.recipes import main

if __name__ == "__main__":
    sys.exit(main())
