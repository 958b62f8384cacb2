"""Reliability and security cases (issues 7 and 16), grouped by the part of the zoo they attack.

``docs/reliability.md`` maps every case of the issues to the test that tries it and what was observed. Everything
runs against real files, real local HTTP servers and, for the disk-full cases, a real 1 MiB tmpfs (skipped when it
cannot be mounted). TensorFlow is only ever imported by the ``fashionzoo`` commands these tests start in
subprocesses, as a user would run them.
"""
