"""Benchmark data: the normalised cases, the loaders of each on-disk format, MQuAKE prompts, CounterFact and
scope records (no model, except `counterfact.editable_cases`)."""
