# The soak is a script (python tests/soak/soak.py), not a test module: pytest never collects
# or imports anything here (its modules import each other as top-level names).
collect_ignore_glob = ["*.py"]
