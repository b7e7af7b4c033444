"""The `kedit` command line, run as a user runs it (a subprocess per command, JSON output)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def kedit(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "kedit.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=900,
    )
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_verbs_round_trip_with_json(tmp_path):
    kb = str(tmp_path / "kb")
    ins = json.loads(
        kedit(
            "insert",
            "--subject",
            "Atlantis",
            "--relation",
            "capital",
            "--object",
            "Meropis",
            "--source",
            "atlas",
            "--kb",
            kb,
            "--json",
        ).stdout
    )
    assert ins["route"] == "store" and len(ins["fact_ids"]) == 1
    kedit(
        "insert",
        "The Eiffel Tower was repainted in 2026.",
        "--source",
        "news",
        "--valid-from",
        "2026-01-01",
        "--kb",
        kb,
        "--json",
    )
    ans = json.loads(kedit("query", "What is the capital of Atlantis?", "--kb", kb, "--json").stdout)
    assert ans["text"] == "Meropis" and ans["evidence"][0]["tier"] == "stored"
    hist = json.loads(kedit("history", "--kb", kb, "--json").stdout)
    assert [h["decision"] for h in hist] == ["store", "store"]
    shown = json.loads(kedit("show", ins["id"], "--kb", kb, "--json").stdout)
    assert shown["fact"]["object"] == "Meropis"
    out = json.loads(kedit("export", str(tmp_path / "exp"), "--kb", kb, "--json").stdout)
    assert "record.jsonl" in out["files"] and any(f.startswith("graph.") for f in out["files"])
    undone = json.loads(kedit("undo", ins["id"], "--kb", kb, "--json").stdout)
    assert undone["actions"] == [f"fact {ins['fact_ids'][0]} tombstoned"]
    # bad input: a clear one-line error, exit code 2, no traceback, nothing changed
    bad = kedit(
        "insert",
        "--subject",
        "Atlantis",
        "--relation",
        "no such relation",
        "--object",
        "x",
        "--kb",
        kb,
        check=False,
    )
    assert (
        bad.returncode == 2
        and "unknown relation" in bad.stderr
        and "Traceback" not in bad.stdout + bad.stderr
    )
    assert bad.stdout == ""  # errors go to stderr
    missing = kedit("show", "99999", "--kb", kb, "--json", check=False)  # under --json stdout stays JSON
    assert missing.returncode == 2 and "no ledger entry" in missing.stderr
    assert json.loads(missing.stdout)["error"]["message"] == "no ledger entry '99999'"
    assert len(json.loads(kedit("history", "--kb", kb, "--json").stdout)) == 3


def test_version_and_setup_check():
    from kedit import __version__

    assert kedit("--version").stdout.strip() == f"kedit {__version__}"
    assert kedit("setup", "--check").stdout.strip() == "smollm2-135m is installed"
    unknown = kedit("setup", "--model", "no-such-model", check=False)
    assert unknown.returncode == 2 and "unknown embedded model 'no-such-model'" in unknown.stderr


def test_demo_tells_the_whole_story(tmp_path):
    out = kedit("demo", "--kb", str(tmp_path / "kb")).stdout
    for step in (
        "1. load the model",
        "2. edit",
        "3. insert",
        "4. multi-hop query",
        "5. a user instruction",
        "6. forget",
        "7. undo",
    ):
        assert step in out
    assert "Paris" in out  # a real closed-book answer
    assert "route both" in out and "answer: Rome" in out  # edited fact + stored fact chained
    assert "verified gone: True" in out
