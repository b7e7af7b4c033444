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
from kedit.store.hit import Hit

try:
    from langchain_core.callbacks import CallbackManagerForRetrieverRun
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever
    from langchain_core.runnables import RunnableLambda
except ImportError as exc:
    raise MissingExtraError(
        f"the LangChain adapters need langchain-core: pip install 'kedit[langchain]' ({exc})"
    ) from exc
from pydantic import ConfigDict


class KnowledgeRetriever(BaseRetriever):
    """The knowledge store as LangChain Documents, through the scope decision `kl.query` uses: the stored
    facts the query is in scope of (best first), then passages that name what it is about. A query about
    nothing stored gets no documents. `scoped=False` gives plain dense + lexical nearest neighbours."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    layer: Any
    k: int = 5
    as_of: Any = None
    scoped: bool = True

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        if not self.scoped:
            return [_document(h) for h in self.layer.store.search(query, k=self.k, as_of=self.as_of)]
        decision = self.layer.in_scope(query, as_of=self.as_of)
        docs = [_document(Hit.of_fact(c.fact, c.score)) for c in decision.in_scope]
        from kedit.query import names_in

        names = [n.casefold() for n in names_in(query, decision)]
        if names and len(docs) < self.k:
            for hit in self.layer.store.search(query, k=self.k, as_of=self.as_of, kinds=("passage",)):
                if any(n in hit.text.casefold() for n in names):
                    docs.append(_document(hit))
        return docs[: self.k]


def _document(hit: Hit) -> Document:
    """A piece of evidence as a LangChain Document (the metadata names its kind, id and tier as `Answer`s do)."""
    return Document(
        page_content=hit.text,
        metadata={
            "kind": hit.kind,
            "id": hit.id,
            "score": float(hit.score),
            "source": hit.source,
            "tier": hit.tier.name.lower(),
        },
    )


def knowledge_runnable(layer):
    """A Runnable: str question (or {"question", "instructions", "as_of"}) -> answer text.

    Use `.with_config` / LCEL as usual; `kl.query` gives the full Answer with evidence.
    """

    def _invoke(inputs: str | dict) -> str:
        if isinstance(inputs, str):
            return layer.query(inputs).text
        return layer.query(
            inputs["question"], instructions=inputs.get("instructions"), as_of=inputs.get("as_of")
        ).text

    return RunnableLambda(_invoke, name="kedit_query")
