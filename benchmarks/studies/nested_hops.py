"""How often `kedit.scope.text.nests_hops` reads a question as reaching its answer through its subject
("Who founded the company that distributed X?"), on wordings that nest hops and wordings that do not.
No model: the subject's place is found in the text (case aside); texts that do not name it are skipped.

- one hop (a "nests" reading is a false one): zsRE-MEND train questions and rephrasings, counterfact-train
  prompts and paraphrases, MQuAKE dev single-hop questions, KnowEdit ZsRE dev edit prompts and rephrasings;
- nested (a reading that misses is a miss): MQuAKE dev multi-hop questions (subject: the first hop's),
  the `portability.Reasoning` prompts of KnowEdit ZsRE dev, wiki_counterfact and wiki_recent.

A question read as nesting is answered from the stored facts walked from its in-scope fact (the model
reads them) instead of with that fact's value, so a false reading costs a one-hop question its
by-preference answer, and a miss answers a two-hop question with the first hop's value.

    python -m benchmarks.studies.nested_hops --out benchmarks/results/scope/nested_hops.jsonl
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from kedit.paths import require_data_dir
from kedit.scope.text import nests_hops


def _read(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))


def _located(pairs: Iterable[tuple[str, str]]) -> Iterator[tuple[str, int, int]]:
    for text, subject in pairs:
        at = text.casefold().find(subject.casefold()) if subject else -1
        if at >= 0:
            yield text, at, at + len(subject)


def _sets(data: Path) -> dict[str, tuple[bool, list[tuple[str, str]]]]:
    """name → (nested?, [(text, subject)])."""
    zsre_mend = _read(data / "zsRE-MEND" / "zsre_mend_train-1k.json")
    cf = _read(data / "CounterFact" / "counterfact-train.json")
    mquake = _read(data / "MQuAKE" / "MQuAKE-CF-3k-dev.json")
    zsre = _read(data / "KnowEdit" / "ZsRE" / "ZsRE-test-dev.json")
    wiki = {
        name: _read(data / "KnowEdit" / folder / file)
        for name, folder, file in (
            ("wiki_counterfact", "wiki_counterfact", "train_cf-dev.json"),
            ("wiki_recent", "wiki_recent", "recent_train-dev.json"),
        )
    }

    def reasoning(records: list[dict]) -> list[tuple[str, str]]:
        out = []
        for r in records:
            for item in (r.get("portability") or {}).get("Reasoning") or []:
                prompt = item["prompt"] if isinstance(item, dict) else item[0]
                out.append((prompt, r["subject"]))
        return out

    return {
        "zsRE-MEND train questions + rephrasings": (
            False,
            [(r[k], r["subject"]) for r in zsre_mend for k in ("src", "rephrase")],
        ),
        "counterfact-train prompts + paraphrases": (
            False,
            [(r[k], r["subject"]) for r in cf for k in ("prompt", "rephrase_prompt")],
        ),
        "MQuAKE dev single-hop questions": (
            False,
            [
                (h["question"], t[0])
                for c in mquake
                for h, t in zip(c["single_hops"], c["orig"]["triples_labeled"])
            ],
        ),
        "KnowEdit ZsRE dev prompts + rephrasings": (
            False,
            [(r["prompt"], r["subject"]) for r in zsre]
            + [(r["rephrase_prompt"], r["subject"]) for r in zsre],
        ),
        "MQuAKE dev multi-hop questions": (
            True,
            [(q, c["orig"]["triples_labeled"][0][0]) for c in mquake for q in c["questions"]],
        ),
        "KnowEdit ZsRE dev Reasoning": (True, reasoning(zsre)),
        **{f"KnowEdit {n} Reasoning": (True, reasoning(records)) for n, records in wiki.items()},
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--examples", type=int, default=0, help="print this many texts of each set")
    parser.add_argument("--out", type=Path, default=None, help="append the counts here (JSON lines)")
    args = parser.parse_args(argv)
    data = args.data or require_data_dir()
    out: dict = {}
    for name, (nested, pairs) in _sets(data).items():
        located = list(_located(pairs))
        hits = [text for text, start, end in located if nests_hops(text, start, end)]
        share = len(hits) / max(1, len(located))
        out[name] = {"nested": nested, "n": len(located), "read_as_nested": len(hits), "share": share}
        kind = "nested: read as nested" if nested else "one hop: read as nested (false)"
        print(f"{name}: {kind} {len(hits)} / {len(located)} = {share:.3f}")
        shown = hits if not nested else [t for t, s, e in located if not nests_hops(t, s, e)]
        for text in shown[: args.examples]:
            print("    ", text)
    if args.out is not None:
        with args.out.open("a", encoding="utf-8") as f:
            f.write(json.dumps(out, ensure_ascii=False) + "\n")
    return out


if __name__ == "__main__":
    main()
