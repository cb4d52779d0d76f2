"""Code shared by tests: builders, the path of the CLI, reference engines, fake servers.

Nothing here is a test. Tests import it as ``support.<module>`` (``tests/`` is on
``sys.path`` because it holds the root ``conftest.py`` and no ``__init__.py``);
fixtures and markers shared by every test live in ``tests/conftest.py``.

- :mod:`support.cli`: ``BIN``, the ``burstlab`` executable of the running interpreter.
- :mod:`support.inproc`: ``invoke``, the ``burstlab`` command run in this process.
- :mod:`support.frames`: small canonical workload tables (``workload``, ``constant_rate``).
- :mod:`support.sim`: a linear cost model and random request arrays for the engine.
- :mod:`support.naive_engine`: the per-iteration reference the fast engine is checked
  against (also used by ``benchmarks/simulate.py``).
- :mod:`support.faulty_server`: a real HTTP server that misbehaves on purpose.
"""
