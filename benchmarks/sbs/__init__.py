"""The side-by-side benchmark (`benchmarks/side_by_side.py`): the same load against a bare relay,
python-socketio and Rendezvous, in interleaved rounds. See docs/benchmarks.md."""
