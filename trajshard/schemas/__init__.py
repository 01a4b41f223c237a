"""The contracts of trajshard, one module each, each with a version number and a validator.

Every validator returns a list of :class:`Problem` (empty when valid) and reports every
problem it finds, not only the first.
"""

from trajshard.schemas.problems import Problem, format_problems

__all__ = ["Problem", "format_problems"]
