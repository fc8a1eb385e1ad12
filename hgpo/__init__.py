"""hgpo: Hierarchy-of-Groups Policy Optimization for long-horizon LLM agents, on Ray."""

__version__ = "0.1.0"
