"""nba's compiled core: arithmetic only, one module per concern.

Everything here takes flat, already validated arrays and returns numbers. Parsing,
validation and error messages live in the Python modules that build these objects
(``nba.models.*``, ``nba.policy``, ...). Each module's ``.pxd`` is its contract with
the others: ``hashing`` and ``rng`` (inline hash and seeded-stream helpers), ``trees``
(LightGBM ensembles), ``vw`` (Vowpal Wabbit scoring), ``policy`` (exploration and
sampling), ``bandits`` (online learners' state), ``experiments`` (GrowthBook bucketing),
``decide`` (one fused decision), ``vectorize`` (dicts to model vectors), ``locks`` (the lock
of short critical sections, for Python and compiled code) and ``logio`` (log writes).
"""
