"""Speed of the scope path: a query answered from an in-scope stored fact (no generation), at 10k and 100k
facts, and the time to open a store and to build its entity index (timed apart from the rest of the open).

The store is filled with counterfact-train facts (subject, a relation from the prompt's template, target,
and the prompt as provenance); past the file's 10,000 records, the subjects get a numbered suffix
("Andy Kershaw 2") so every fact has its own subject. Facts go in through
`KnowledgeStore.add_facts_in_batches` (the bulk path), then a knowledge layer is opened on the store and
asked the edit prompts of 200 stored facts (a template's word-for-word match settles their scope), then
their paraphrases (`rephrase_prompt`, first lap only: scored by the scope head and the cross-encoder).

    python -m benchmarks.studies.scope_speed --facts 10000 100000
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from kedit import KnowledgeLayer, load_model
from kedit.paths import require_data_dir
from kedit.scope import learned_relation
from kedit.scope.text import relation_template
from kedit.statements import match_relation
from kedit.store import KnowledgeStore


def facts_for(records: list[dict], n: int, relations) -> list[dict]:
    out = []
    for i in range(n):
        r = records[i % len(records)]
        lap = i // len(records)
        subject = r["subject"] if lap == 0 else f"{r['subject']} {lap + 1}"
        template = relation_template(r["prompt"], r["subject"])
        rephrase = (
            r.get("rephrase_prompt", "") if lap == 0 and r["subject"] in r.get("rephrase_prompt", "") else ""
        )
        out.append(
            dict(
                subject=subject,
                template=template,
                object=r["target_new"],
                prompt=template.replace("{}", subject),
                rephrase=rephrase,
            )
        )
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--facts", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--model", default="smollm2-135m")
    args = parser.parse_args(argv)
    records = json.loads(
        ((args.data or require_data_dir()) / "CounterFact" / "counterfact-train.json").read_text()
    )
    bundle = load_model(args.model)
    for n in args.facts:
        with tempfile.TemporaryDirectory() as tmp:
            store = KnowledgeStore.open(Path(tmp) / "store")
            rows = facts_for(records, n, store.relations)
            ids: dict[str, str] = {}
            for row in rows:  # the relation an edit of this prompt gets: a template's, else a learned one
                if row["template"] not in ids:
                    rel = match_relation(row["template"], store.relations)
                    if rel is None:
                        learned = learned_relation(row["template"])
                        if learned.id not in store.relations:
                            store.register_relation(
                                learned.id,
                                learned.label,
                                cloze=learned.cloze,
                                question=learned.question,
                                source="learned",
                            )
                        rel = learned.id
                    ids[row["template"]] = rel
            t0 = time.perf_counter()
            store.add_facts_in_batches(
                [
                    dict(
                        subject=r["subject"],
                        relation=ids[r["template"]],
                        object=r["object"],
                        provenance={"prompt": r["template"]},
                    )
                    for r in rows
                ],
                batch_size=2000,
            )
            t_write = time.perf_counter() - t0
            store.close()
            t0, c0 = time.perf_counter(), time.process_time()
            kl = KnowledgeLayer.open(tmp, model=bundle)  # the store, and the layer's locality-probe baseline
            t_open, c_open = time.perf_counter() - t0, time.process_time() - c0
            t0, c0 = time.perf_counter(), time.process_time()
            kl.scope.link("warm-up")  # builds the entity index (names and aliases) on first use
            t_link, c_link = time.perf_counter() - t0, time.process_time() - c0
            t0, c0 = time.perf_counter(), time.process_time()
            # a made-up name links nothing whole: the part-name index is built (once, on first such text)
            kl.scope.link("Who was Qzxv Wkjq Plorb's father?")
            t_part, c_part = time.perf_counter() - t0, time.process_time() - c0
            kl.scope.bank("P27")  # relation banks are built once per record version
            asked = rows[:: max(1, n // args.queries)][: args.queries]
            timed = {}
            for kind in ("prompt", "rephrase"):
                times, right = [], 0
                for row in (r for r in asked if r[kind]):
                    t = time.perf_counter()
                    ans = kl.query(row[kind])
                    times.append(time.perf_counter() - t)
                    right += ans.text == row["object"]
                times.sort()
                timed[kind] = (len(times), right, times)
            kl.close()
        (n_asked, right, times), (n_para, right_para, para) = timed["prompt"], timed["rephrase"]
        # CPU seconds beside wall seconds: on a shared machine the wall clock also counts other jobs' turns
        print(
            json.dumps(
                {
                    "facts": n,
                    "write_s": round(t_write, 1),
                    "open_s": round(t_open, 2),
                    "open_cpu_s": round(c_open, 2),
                    "link_index_s": round(t_link, 2),
                    "link_index_cpu_s": round(c_link, 2),
                    "part_name_index_s": round(t_part, 2),
                    "part_name_index_cpu_s": round(c_part, 2),
                    "open_and_link_s": round(t_open + t_link, 2),
                    "queries": n_asked,
                    "answered_from_store": right,
                    "p50_ms": round(1000 * statistics.median(times), 1),
                    "p90_ms": round(1000 * times[int(0.9 * len(times))], 1),
                    "paraphrases": n_para,
                    "paraphrases_answered_from_store": right_para,
                    "paraphrase_p50_ms": round(1000 * statistics.median(para), 1) if para else None,
                    "paraphrase_p90_ms": round(1000 * para[int(0.9 * len(para))], 1) if para else None,
                }
            )
        )


if __name__ == "__main__":
    main()
