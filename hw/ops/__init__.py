"""The hardware ops of the dataflow graph, one class per op type, found by ``op_of(node)``.

Every module of this package defines and registers its ops (:func:`hw.ops.base.register`); they
are imported here, so a new op file is found without an edit anywhere else.  The base class and
its hooks: :mod:`hw.ops.base`; how to add an op: docs/adding-an-op.md.
"""
import importlib
import pkgutil

from .base import (HOOKS, IO, REGISTRY, FoldingError, HwOp, Port, UnsupportedOpError, check_fold,  # noqa: F401
                   io_of, op_class, op_of, register)

for _m in pkgutil.iter_modules(__path__):
    if _m.name != "base":
        importlib.import_module(f"{__name__}.{_m.name}")


def op_types() -> list:
    """Every registered op type."""
    return sorted(REGISTRY)
