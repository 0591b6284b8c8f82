"""Baseline methods, one module each, all implementing ``repro.method.Method``. The pipeline finds them
(``repro.discover``): a new baseline is one new module here."""
