"""Rebuild this sample from the full benchmark data: `python tests/data/make_sample.py <data root>`.

Each file keeps the first records of its source file (JSON re-serialised with indent 1, no field changed);
zsRE-MEND also keeps its two records with an empty target (source indices 534 and 723) at the end, so the
loaders' malformed-record handling is tested. The MQuAKE prompts are copied whole; WikiText-2 is cut to
its first 8,000 characters. See SOURCES.md for origins and licences.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIRST = {
    "CounterFact/counterfact-train.json": 240,
    "CounterFact/counterfact-val.json": 200,
    "KnowEdit/WikiBio/wikibio-train-all.json": 40,
    "KnowEdit/ZsRE/ZsRE-test-dev.json": 60,
    "KnowEdit/wiki_counterfact/train_cf-dev.json": 40,
    "KnowEdit/wiki_recent/recent_train-dev.json": 40,
    "MQuAKE/MQuAKE-CF-3k-dev.json": 100,
    "zsRE-MEND/zsre_mend_train-1k.json": 60,
}
EXTRA = {"zsRE-MEND/zsre_mend_train-1k.json": [534, 723]}


def main(root: Path) -> None:
    for rel, n in FIRST.items():
        records = json.loads((root / rel).read_text(encoding="utf-8"))
        keep = records[:n] + [records[i] for i in EXTRA.get(rel, [])]
        out = HERE / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(keep, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    shutil.copytree(root / "MQuAKE" / "prompts", HERE / "MQuAKE" / "prompts", dirs_exist_ok=True)
    wiki = HERE / "text-corpus" / "wikitext-2" / "valid.txt"
    wiki.parent.mkdir(parents=True, exist_ok=True)
    text = (root / "text-corpus" / "wikitext-2" / "valid.txt").read_text(encoding="utf-8")[:8000]
    wiki.write_text(text[: text.rfind("\n") + 1], encoding="utf-8")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
