"""KnowEdit and MQuAKE evaluations and measurement studies, driven through kedit's public API.

By role, each layer importing only the ones below it (checked by import-linter, pyproject.toml):
`cli` (the `kedit bench` command line) > `studies` (one measurement script each: `kedit bench study NAME`)
> `runners` (KnowEdit, MQuAKE, run directories, shards, compare) > `methods` (the adapters and their
registry) > `scoring` (metrics, intervals, generation) > `data` (cases, loaders, prompts) | `legacy`
(frozen old code for same-run comparisons).
"""
