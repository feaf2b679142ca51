"""spark-submit entry point for corpus2vec's Spark jobs: ``run_job.py JOB [ARGS...]``.

spark-submit runs a Python *file*, not ``python -m``; this file imports
``jobs.JOB`` (shipped in the zip that infra/spark/submit.sh passes with
``--py-files``) and calls its ``main(argv)``, exactly what ``python -m corpus2vec.jobs.JOB``
does, so a job behaves the same on a laptop and on a cluster.
"""

from __future__ import annotations

import importlib
import sys

JOBS = ("tokenize", "count", "pairs")


def main(argv: list[str]) -> int:
    """Run one job's ``main`` with the remaining arguments; 2 on an unknown job name."""
    if not argv or argv[0] not in JOBS:
        print(f"usage: run_job.py {{{','.join(JOBS)}}} [job arguments]", file=sys.stderr)
        return 2
    module = importlib.import_module(f"corpus2vec.jobs.{argv[0]}")
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
