"""hsl-tools: Hindsight Supervised Learning for LLM agents."""

__version__ = "0.1.0"
