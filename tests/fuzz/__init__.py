"""
Fuzz campaigns for every parser a stranger can reach: one harness module
per target (its invariants in its docstring), the seed corpus in
C{corpus/}, the short campaigns CI runs (L{tests.fuzz.test_campaigns}) and
the long ones of C{scripts/fuzz.py} (docs/developing.md, "Fuzzing").
"""
