"""Does the router beat always-parametric and always-store? (issue #5)

One stream of real updates from ../shared/data goes, one `KnowledgeLayer.edit` call at a time, through
three policies on the same model: `router` (the router decides), `parametric` (`route="parametric"`:
weights only) and `store` (`route="store"`: record only). The stream mixes MQuAKE's requested edits
(Wikidata relations, some multi-valued) with KnowEdit ZsRE edits (free-form questions no relation template
matches). After the stream, each policy is scored on:

- `edit_succ`: the model itself states the new fact: EasyEdit's rewrite accuracy (teacher-forced token
  accuracy of the target after the edit prompt), closed-book, the way a user calling the model sees it;
- `answer_succ`: `KnowledgeLayer.query(question)` states the new target (the layer's own answer);
- `locality`: unrelated knowledge unchanged: the mean of (a) EasyEdit's locality (predicted-token
  agreement before vs after on ZsRE's locality questions and kedit's locality probes) and (b) the share
  of the layer's answers to those questions that are unchanged;
- `multi_hop`: MQuAKE multi-hop accuracy through `query` (a case counts when one of its questions gets
  `new_answer` or an alias, exact match after dropping a leading article).

`score` is the plain mean of the four. Weight changes are undone after each policy (bit-exact, checked).

    .venv/bin/python -m benchmarks.studies.router_bench --mquake 20 --zsre 10 --out runs/router
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.data.cases import EditCase, MQuAKECase
from benchmarks.data.loaders import load_knowedit, load_mquake
from benchmarks.methods.layer import undo_weight_changes
from benchmarks.runners.runs import progress_bar
from benchmarks.scoring.answers import normalised, states

POLICIES = ("router", "parametric", "store")


@dataclass(frozen=True)
class Update:
    prompt: str  # holds the subject or `{}`
    subject: str
    target: str
    relation: str | None
    question: str  # how a user asks for it


def updates_from(mquake: Sequence[MQuAKECase], zsre: Sequence[EditCase]) -> list[Update]:
    """The stream: each (subject, relation) once, MQuAKE's edits then ZsRE's, interleaved."""
    seen, mq = set(), []
    for case in mquake:
        for rw in case.requested_rewrite:
            key = (rw.subject.casefold(), rw.relation_id)
            if key not in seen:
                seen.add(key)
                mq.append(Update(rw.prompt, rw.subject, rw.target_new, rw.relation_id or None, rw.question))
    zs = [Update(c.prompt, c.subject, c.target_new, None, c.prompt) for c in zsre if c.subject in c.prompt]
    out: list[Update] = []
    for i in range(max(len(mq), len(zs))):
        out += mq[i : i + 1] + zs[i : i + 1]
    return out


def locality_questions(zsre: Sequence[EditCase], extra: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    qs = [(qa.prompt, qa.answer) for c in zsre for qa in c.locality.get("Relation_Specificity", ())]
    return qs + list(extra)


def _multi_hop_ok(answer: str, case: MQuAKECase) -> bool:
    a = normalised(answer)
    return any(a == normalised(x) for x in (case.new_answer, *case.new_answer_alias))


def score_policy(
    kl,
    policy: str,
    updates: Sequence[Update],
    mquake: Sequence[MQuAKECase],
    loc_qs: Sequence[tuple[str, str]],
    loc_pre_scores,
    loc_pre_answers: Sequence[str],
) -> dict[str, Any]:
    from kedit.scoring import score_targets, token_agreement

    route = None if policy == "router" else policy
    t0 = time.perf_counter()
    routes: dict[str, int] = {}
    details: list[dict[str, Any]] = []
    with progress_bar(f"{policy}: edits", len(updates)) as advance:
        for u in updates:
            res = kl.edit(u.prompt, target=u.target, subject=u.subject, relation=u.relation, route=route)
            routes[res.route.value] = routes.get(res.route.value, 0) + 1
            details.append(
                {
                    "subject": u.subject,
                    "relation": u.relation,
                    "target": u.target,
                    "route": res.route.value,
                    "reasons": res.reasons,
                }
            )
            advance()
    edit_seconds = time.perf_counter() - t0
    prompts = [u.prompt.replace("{}", u.subject) for u in updates]
    rewrite = [s.accuracy for s in score_targets(kl.bundle, prompts, [u.target for u in updates])]
    with progress_bar(f"{policy}: queries", len(updates) + len(loc_qs) + len(mquake)) as advance:
        answered = []
        for u, row, acc in zip(updates, details, rewrite):
            text = kl.query(u.question).text
            answered.append(states(text, u.target))
            row |= {"question": u.question, "answer": text, "answer_ok": answered[-1], "rewrite_acc": acc}
            advance()
        loc_post = score_targets(kl.bundle, [q for q, _ in loc_qs], [a for _, a in loc_qs])
        agree = [token_agreement(b, a) for b, a in zip(loc_pre_scores, loc_post)]
        unchanged, loc_rows = [], []
        for (q, _), before, agreement in zip(loc_qs, loc_pre_answers, agree):
            text = kl.query(q).text
            unchanged.append(normalised(text) == normalised(before))
            loc_rows.append({"question": q, "before": before, "after": text, "token_agreement": agreement})
            advance()
        hops, hop_rows = [], []
        for case in mquake:
            answers = []
            for q in case.questions:
                answers.append(kl.query(q).text)
                if _multi_hop_ok(answers[-1], case):
                    break
            hops.append(_multi_hop_ok(answers[-1], case))
            hop_rows.append(
                {"case_id": case.case_id, "answers": answers, "new_answer": case.new_answer, "ok": hops[-1]}
            )
            advance()
    mean = lambda xs: sum(xs) / len(xs) if xs else 0.0  # noqa: E731
    metrics = {
        "edit_succ": mean(rewrite),
        "answer_succ": mean(answered),
        "locality": (mean(agree) + mean(unchanged)) / 2,
        "locality_tokens": mean(agree),
        "locality_answers": mean(unchanged),
        "multi_hop": mean(hops),
    }
    metrics["score"] = mean([metrics[k] for k in ("edit_succ", "answer_succ", "locality", "multi_hop")])
    return {
        "policy": policy,
        "metrics": metrics,
        "routes": routes,
        "edit_seconds": round(edit_seconds, 1),
        "seconds": round(time.perf_counter() - t0, 1),
        "updates": details,
        "locality_rows": loc_rows,
        "multi_hop_rows": hop_rows,
    }


def run(
    bundle,
    mquake: Sequence[MQuAKECase],
    zsre: Sequence[EditCase],
    policies: Sequence[str] = POLICIES,
    workdir: str | None = None,
) -> dict[str, Any]:
    from kedit import KnowledgeLayer
    from kedit.layer import LOCALITY_PROBES
    from kedit.scoring import score_targets

    updates = updates_from(mquake, zsre)
    loc_qs = locality_questions(zsre, LOCALITY_PROBES)
    loc_pre = score_targets(bundle, [q for q, _ in loc_qs], [a for _, a in loc_qs])
    results = []
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        with KnowledgeLayer.open(Path(tmp) / "empty", model=bundle) as empty:
            pre_answers = [empty.query(q).text for q, _ in loc_qs]
        for policy in policies:
            if policy not in POLICIES:
                raise ValueError(f"unknown policy {policy!r}: expected one of {', '.join(POLICIES)}")
            with KnowledgeLayer.open(Path(tmp) / policy, model=bundle) as kl:
                results.append(score_policy(kl, policy, updates, mquake, loc_qs, loc_pre, pre_answers))
                undo_weight_changes(kl)  # the next policy starts from the same weights
            after = score_targets(bundle, [q for q, _ in loc_qs], [a for _, a in loc_qs])
            if any(
                a.predicted != b.predicted or abs(a.logprob - b.logprob) > 1e-4
                for a, b in zip(after, loc_pre)
            ):
                raise RuntimeError(f"weights not restored after policy {policy!r}")
    return {
        "benchmark": "router",
        "n_updates": len(updates),
        "n_mquake_cases": len(mquake),
        "n_zsre_cases": len(zsre),
        "n_locality_questions": len(loc_qs),
        "policies": results,
    }


def markdown(summary: dict[str, Any]) -> str:
    lines = [
        f"Router vs fixed policies on `{summary['model']}`: {summary['n_updates']} updates "
        f"({summary['n_mquake_cases']} MQuAKE cases' edits + {summary['n_zsre_cases']} ZsRE edits), "
        f"{summary['n_locality_questions']} locality questions. Values ×100.",
        "",
        "| policy | edit succ (model) | answer succ (layer) | locality | multi-hop | **score** | routes | edit s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in summary["policies"]:
        m = r["metrics"]
        routes = ", ".join(f"{k} {v}" for k, v in sorted(r["routes"].items()))
        lines.append(
            f"| {r['policy']} | {100 * m['edit_succ']:.1f} | {100 * m['answer_succ']:.1f} | "
            f"{100 * m['locality']:.1f} | {100 * m['multi_hop']:.1f} | **{100 * m['score']:.1f}** | "
            f"{routes} | {r['edit_seconds']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    from kedit import load_model
    from kedit.paths import require_data_dir

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="shared data directory [default: ../shared/data]")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument(
        "--mquake", type=int, default=20, help="MQuAKE dev cases (their edits and multi-hop questions)"
    )
    ap.add_argument("--zsre", type=int, default=10, help="KnowEdit ZsRE cases")
    ap.add_argument("--policies", nargs="*", default=list(POLICIES))
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    data = Path(args.data) if args.data else require_data_dir()
    t0 = time.perf_counter()
    mquake = load_mquake(data / "MQuAKE", limit=args.mquake).cases
    zsre = load_knowedit(data / "KnowEdit" / "ZsRE", kind="zsre", limit=args.zsre).cases
    summary = run(load_model(args.model), mquake, zsre, args.policies)
    # relative to the data root: a run record names no machine's path
    summary |= {
        "model": args.model,
        "data": ["MQuAKE", "KnowEdit/ZsRE"],
        "seconds": round(time.perf_counter() - t0, 1),
    }
    md = markdown(summary)
    print(md)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.json").write_text(json.dumps(summary, indent=1))
        (out / "summary.md").write_text(md)
    return summary


if __name__ == "__main__":
    main()
