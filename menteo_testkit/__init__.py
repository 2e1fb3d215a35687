"""What the tests, the soak (tests/soak/) and the benchmarks (bench/) share to run the server:
a free loopback port, the server as a subprocess, tokens signed with a test secret, an empty
PostgreSQL database, and CPU and memory read from ``/proc``.

An ordinary package of the project (installed with it, never imported by ``realtime``), so
every script and test imports it by name, with no ``sys.path`` edits.
"""
