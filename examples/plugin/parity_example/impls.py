"""An extra implementation of an op of a built-in suite: stream's copy (c = a) as an indexed copy.

`parity.impls` entry points give a dict of suite name -> Impl(s); the op's inputs, reference and
check stay the suite's, so the new implementation is validated and timed exactly like the others.
"""
from __future__ import annotations

from parity.harness.core.model import Impl


def _prepare(arrays, params):
    a, c = arrays["a"], arrays["c"]
    return lambda: c.copy_(a.view(-1)[:])  # what copy's reference expects: c holding a


IMPLS = {"stream": [Impl("example-copy", "copy", "torch", _prepare)]}
