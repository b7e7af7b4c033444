"""The KnowEdit and MQuAKE runners, their run directories (resume, shards, merge), the comparison report and
the runner commands of `kedit bench`."""
