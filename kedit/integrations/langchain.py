"""LangChain (langchain-core) adapters: a `BaseRetriever` over the store and a `Runnable` over query.

>>> retriever = kl.as_retriever(k=3)                                  # doctest: +SKIP
>>> retriever.invoke("mother tongue of Danielle Darrieux")[0].metadata["tier"]  # doctest: +SKIP
'stored'
>>> kl.as_runnable().invoke("What is the mother tongue of Danielle Darrieux?")   # doctest: +SKIP
'English'
"""

from __future__ import annotations

from typing import Any

from kedit.errors import MissingExtraError

try:
    from langchain_core.callbacks import CallbackManagerForRetrieverRun
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever
    from langchain_core.runnables import RunnableLambda
except ImportError as exc:
    raise MissingExtraError(f"the LangChain adapters need langchain-core: pip install 'kedit[langchain]' ({exc})") from exc
from pydantic import ConfigDict


class KnowledgeRetriever(BaseRetriever):
    """Dense + lexical search over the knowledge store's facts and passages, as LangChain Documents."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    layer: Any
    k: int = 5
    as_of: Any = None

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        hits = self.layer.store.search(query, k=self.k, as_of=self.as_of)
        return [
            Document(
                page_content=h.text,
                metadata={"kind": h.kind, "id": h.id, "score": float(h.score), "source": h.source,
                          "tier": "stored" if h.kind == "fact" else "passage"},
            )
            for h in hits
        ]


def knowledge_runnable(layer):
    """A Runnable: str question (or {"question", "instructions", "as_of"}) -> answer text.

    Use `.with_config` / LCEL as usual; `kl.query` gives the full Answer with evidence.
    """

    def _invoke(inputs: str | dict) -> str:
        if isinstance(inputs, str):
            return layer.query(inputs).text
        return layer.query(inputs["question"], instructions=inputs.get("instructions"), as_of=inputs.get("as_of")).text

    return RunnableLambda(_invoke, name="kedit_query")
