"""Adapters from kedit to other ecosystems (LangChain)."""
