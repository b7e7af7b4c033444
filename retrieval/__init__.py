"""retrieval: dense vector search (FAISS) with stable ids, plus lexical re-ranking for names and numbers.

It takes vectors, never text models: the caller embeds (or injects an embedding function elsewhere).

>>> import numpy as np
>>> from retrieval import VectorIndex
>>> index = VectorIndex(dim=2); index.add([7], np.array([[1.0, 0.0]]))
>>> index.search(np.array([1.0, 0.1]), k=1)[0][0]
7
"""

from retrieval.errors import IndexCorruptError, RetrievalError, VectorInputError
from retrieval.lexical import rerank, salient_tokens, tokens
from retrieval.manifest import IndexManifest, ids_checksum
from retrieval.vector_index import FLAT, HNSW, VectorIndex

__all__ = [
    "FLAT",
    "HNSW",
    "IndexCorruptError",
    "IndexManifest",
    "RetrievalError",
    "VectorIndex",
    "VectorInputError",
    "ids_checksum",
    "rerank",
    "salient_tokens",
    "tokens",
]
