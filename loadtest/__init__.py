"""The Rendezvous load tester: `rendezvous-load SCENARIO.yaml` (docs/loadtest.md).

scenario/steps/yamlread: the YAML format and its validation; engine/session: virtual users
and their flows; runner/workers: load phases in worker processes; cli: the command.
measure/thresholds/report/html_report: figures, pass/fail and outputs.
"""
