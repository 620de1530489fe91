"""Agents: workers and planners, and the parts they are made of.

``context`` (what they are given), ``scheduler`` (ordered concurrent attempts),
``attempt`` (propose, edit, check, evaluate; shared with merges), ``propose`` (one
attempt of a worker's agent), ``bookkeeping`` (what an applied attempt changes),
``handoff`` (writing reports), ``memory``, ``goals``, ``prompts``, ``toolagent``,
``worker`` and ``planner``.
"""

from ..records import Experiment, Handoff
from .context import Budget, Context
from .memory import AgentMemory
from .planner import Planner
from .worker import Worker

__all__ = ["AgentMemory", "Budget", "Context", "Experiment", "Handoff", "Planner", "Worker"]
