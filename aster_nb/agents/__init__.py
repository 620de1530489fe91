"""Agents: memories, workers and their handoffs."""

from .handoff import Handoff
from .memory import AgentMemory, Experiment
from .worker import Budget, Worker

__all__ = ["AgentMemory", "Budget", "Experiment", "Handoff", "Worker"]
