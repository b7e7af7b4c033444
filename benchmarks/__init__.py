"""KnowEdit and MQuAKE evaluations, driven through kedit's public API."""
