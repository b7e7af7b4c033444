"""CounterFact records (EasyEdit's flat format) for the editing studies: loading, the edit request of a record,
the first records a model does not already answer, and the locality prompt behind the edit sentence."""

from __future__ import annotations

import json
from pathlib import Path

from kedit.editing import EditRequest
from kedit.paths import require_data_dir
from kedit.scoring import score_targets


def load_counterfact(path: Path | None, n: int) -> tuple[list[dict], str]:
    """The first `n` records of `path` [default: the shared counterfact-val.json], and the path read."""
    path = path or require_data_dir() / "CounterFact" / "counterfact-val.json"
    records = json.loads(Path(path).read_text())
    return records[:n], str(path)


def request_of(case: dict) -> EditRequest:
    return EditRequest(case["prompt"], case["subject"], case["target_new"])


def editable_cases(bundle, n: int, data: Path | None = None) -> tuple[list[dict], int, str]:
    """The first n cases whose new target the model does not already produce; (cases, skipped, source)."""
    pool, source = load_counterfact(data, 2 * n + 20)
    scores = score_targets(bundle, [c["prompt"] for c in pool], [c["target_new"] for c in pool])
    keep = [i for i, s in enumerate(scores) if s.accuracy < 1.0][:n]
    skipped = (keep[-1] + 1 - len(keep)) if keep else 0
    return [pool[i] for i in keep], skipped, source


def locality_with_edit(case: dict) -> str:
    """The locality prompt after the edit sentence (docs/methods.md §4: the specificity SADR targets).

    >>> locality_with_edit({"prompt": "{} plays", "subject": "Ann", "target_new": "chess", "locality_prompt": "Bob plays"})
    'Ann plays chess. Bob plays'
    """
    edit_sentence = case["prompt"].replace("{}", case["subject"]) + " " + case["target_new"] + "."
    return edit_sentence + " " + case["locality_prompt"]
