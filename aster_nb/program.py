"""The program records' old address: :mod:`aster_nb.records` holds them now.

Kept so ``from aster_nb.program import Program`` (notebooks, scripts, the modules not yet
moved over) goes on working.
"""

from .records import EvalResult, Program, Status, code_hash

__all__ = ["EvalResult", "Program", "Status", "code_hash"]
