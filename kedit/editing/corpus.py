"""The text the MLP key statistics are computed over: installed with kedit, or the user's own.

ROME, MEMIT and AlphaEdit need C_l = E[k kᵀ] over real text (never evaluation data). By default that is
the plain text of the English Wikipedia excerpt gensim ships as test data, stored in this package
(`kedit/data/enwiki-excerpt.jsonl.xz`, 0.8 MB, CC BY-SA: see kedit/data/NOTICE.md), so a weight edit works
after `pip install` alone. Shipping the stripped text was chosen over locating gensim's wheel: gensim
would be a 25 MB dependency (with scipy) whose test-data layout is not an interface. The statistics
are identical to those computed from the XML (same articles, same stripping, same order; measured by
`python -m benchmarks.studies.corpus_check`).

A user may pass a directory or file of their own text (MediaWiki XML, `.txt`, `.jsonl` with a `text`
field, optionally `.gz`/`.xz`), or set `KEDIT_STATS_CORPUS`. Every corpus has a `digest` (sha256 of its
bytes) that is part of the statistics' cache key, so statistics never outlive their text.

>>> c = bundled_corpus()
>>> c.name, len(c.digest)
('enwiki-excerpt', 12)
>>> next(iter(c.documents())).split()[0]
'Anarchism'
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import html
import json
import lzma
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from importlib.resources import files
from pathlib import Path
from typing import IO, cast

from kedit.errors import KeditError

BUNDLED_FILE = "enwiki-excerpt.jsonl.xz"
ENV_VAR = "KEDIT_STATS_CORPUS"
_TEXT_SUFFIXES = (".xml", ".txt", ".jsonl")


class CorpusError(KeditError):
    """A statistics corpus path holds no text kedit can read."""


_INNER_TEMPLATE = re.compile(r"\{\{[^{}]*\}\}")
_TABLE = re.compile(r"\{\|.*?\|\}", re.S)
_FILE_LINK = re.compile(r"\[\[(?:File|Image|Category|Media|[a-z]{2,3}(?:-[a-z]+)?):[^\[\]]*\]\]", re.I)
_LINK = re.compile(r"\[\[(?:[^\[\]|]*\|)?([^\[\]|]*)\]\]")
_EXT_LINK = re.compile(r"\[https?://[^\s\]]*\s?([^\]]*)\]")
_REF = re.compile(r"<ref[^>/]*/>|<ref[^>]*>.*?</ref>", re.S | re.I)
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_TAG = re.compile(r"<[^>]+>")
_HEADING = re.compile(r"^=+\s*(.*?)\s*=+\s*$", re.M)


def strip_wiki_markup(text: str) -> str:
    """Plain prose from MediaWiki markup: templates, tables, refs, files and categories removed, links
    reduced to their text. (mwparserfromhell would parse more, but is not needed for prose lines.)

    >>> strip_wiki_markup("'''Paris''' is the [[capital city|capital]] of [[France]] and its largest city.{{cite|x}}<ref>a</ref>")
    'Paris is the capital of France and its largest city.'
    """
    text = html.unescape(text)
    text = _COMMENT.sub("", text)
    text = _REF.sub("", text)
    for _ in range(10):  # nested templates: remove innermost first
        new = _INNER_TEMPLATE.sub("", text)
        if new == text:
            break
        text = new
    text = _TABLE.sub("", text)
    for _ in range(10):  # links nested in file captions
        new = _LINK.sub(r"\1", _FILE_LINK.sub("", text))
        if new == text:
            break
        text = new
    text = _EXT_LINK.sub(r"\1", text)
    text = _TAG.sub("", text)
    text = _HEADING.sub("", text)
    text = text.replace("'''", "").replace("''", "")
    lines = []
    for line in text.splitlines():
        line = line.strip().lstrip("*#:;").strip()
        if len(line.split()) >= 8:  # prose, not list debris
            lines.append(line)
    return "\n".join(lines)


def _open(path: Path) -> IO[bytes]:
    if path.suffix == ".xz":
        return lzma.open(path, "rb")
    if path.suffix == ".gz":
        return cast(IO[bytes], gzip.open(path, "rb"))
    return path.open("rb")


def _kind(path: Path) -> str | None:
    """'xml', 'txt' or 'jsonl' from the name (a compression suffix aside), else by sniffing an XML head."""
    name = path.name.removesuffix(".xz").removesuffix(".gz")
    for suffix in _TEXT_SUFFIXES:
        if name.endswith(suffix):
            return suffix[1:]
    with _open(path) as fh:
        head = fh.read(512).lstrip()
    return "xml" if head.startswith((b"<mediawiki", b"<?xml")) else None


def wiki_xml_articles(path: Path) -> Iterator[tuple[str, str]]:
    """(title, plain text) of a MediaWiki XML dump's main-namespace articles, redirects skipped."""
    with _open(path) as fh:
        for _, elem in ET.iterparse(fh):
            if elem.tag.endswith("}page"):
                ns = next((c.text for c in elem if c.tag.endswith("}ns")), "0")
                title = next((c.text or "" for c in elem if c.tag.endswith("}title")), "")
                text_el = next((e for e in elem.iter() if e.tag.endswith("}text")), None)
                if (
                    ns == "0"
                    and text_el is not None
                    and text_el.text
                    and not text_el.text.startswith("#REDIRECT")
                ):
                    doc = strip_wiki_markup(text_el.text)
                    if doc:
                        yield title, doc
                elem.clear()


def _text_articles(path: Path) -> Iterator[str]:
    """WikiText-style files split at `= Title =` lines (its @-@ escapes undone); other text at blank lines."""
    with _open(path) as fh:
        lines = fh.read().decode("utf-8").splitlines()
    wikitext = any(line.strip().startswith("= ") and not line.strip().startswith("= =") for line in lines)
    article: list[str] = []
    for line in lines:
        line = line.strip()
        boundary = (line.startswith("= ") and not line.startswith("= =")) if wikitext else not line
        if boundary:
            if article:
                yield "\n".join(article)
            article = []
        elif line and not (wikitext and line.startswith("=")):
            article.append(line.replace(" @-@ ", "-").replace(" @,@ ", ",").replace(" @.@ ", "."))
    if article:
        yield "\n".join(article)


def _jsonl_articles(path: Path) -> Iterator[str]:
    with _open(path) as fh:
        for n, raw in enumerate(fh, 1):
            if raw.strip():
                try:
                    text = json.loads(raw)["text"]
                except (json.JSONDecodeError, KeyError, TypeError) as exc:
                    raise CorpusError(
                        f"{path}:{n}: expected a JSON object with a 'text' field ({exc})"
                    ) from exc
                if text:
                    yield text


_READERS = {
    "xml": lambda p: (doc for _, doc in wiki_xml_articles(p)),
    "txt": _text_articles,
    "jsonl": _jsonl_articles,
}


@dataclass(frozen=True)
class StatsCorpus:
    """A text source for key statistics: its files, in reading order, and a digest of their bytes."""

    name: str
    paths: tuple[Path, ...]
    digest: str

    def documents(self) -> Iterator[str]:
        for path in self.paths:
            kind = _kind(path)
            if kind is not None:
                yield from _READERS[kind](path)


def _digest(paths: tuple[Path, ...]) -> str:
    h = hashlib.sha256()
    for path in paths:
        h.update(path.name.encode() + b"\0")
        with path.open("rb") as fh:
            for block in iter(partial(fh.read, 1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:12]


def bundled_corpus() -> StatsCorpus:
    """The Wikipedia excerpt installed with kedit."""
    path = Path(str(files("kedit.data") / BUNDLED_FILE))
    if not path.is_file():
        raise CorpusError(f"kedit's statistics corpus {path} is missing: reinstall kedit")
    return StatsCorpus("enwiki-excerpt", (path,), _digest((path,)))


def corpus_from_path(path: str | Path) -> StatsCorpus:
    """A user corpus: one file, or every readable file under a directory (sorted by relative path)."""
    root = Path(path).expanduser()
    if root.is_file():
        paths: tuple[Path, ...] = (root,)
    elif root.is_dir():
        paths = tuple(p for p in sorted(root.rglob("*")) if p.is_file() and _kind(p) is not None)
    else:
        raise CorpusError(f"statistics corpus {root} does not exist")
    if not paths or not any(_kind(p) for p in paths):
        raise CorpusError(f"statistics corpus {root} holds no .xml, .txt or .jsonl text")
    return StatsCorpus(root.name, paths, _digest(paths))


def resolve_corpus(corpus: str | Path | StatsCorpus | None = None) -> StatsCorpus:
    """`corpus` as given, else `$KEDIT_STATS_CORPUS`, else the bundled excerpt."""
    if isinstance(corpus, StatsCorpus):
        return corpus
    if corpus is None:
        corpus = os.environ.get(ENV_VAR) or None
    return bundled_corpus() if corpus is None else corpus_from_path(corpus)


def build_bundled_file(xml_path: Path, out: Path) -> int:
    """Write the JSONL.xz excerpt from a MediaWiki XML dump; returns the number of articles."""
    rows = [
        json.dumps({"title": t, "text": d}, ensure_ascii=False) + "\n" for t, d in wiki_xml_articles(xml_path)
    ]
    out.write_bytes(lzma.compress("".join(rows).encode("utf-8"), preset=9 | lzma.PRESET_EXTREME))
    return len(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m kedit.editing.corpus")
    sub = parser.add_subparsers(dest="cmd", required=True)
    build = sub.add_parser("build", help="rebuild the bundled excerpt from a MediaWiki XML dump")
    build.add_argument("xml", type=Path)
    build.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    print(f"{build_bundled_file(args.xml, args.out)} articles -> {args.out}")


if __name__ == "__main__":
    main()
