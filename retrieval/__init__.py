"""Vector index (FAISS)."""
