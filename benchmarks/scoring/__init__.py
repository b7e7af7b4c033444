"""Metric functions on plain values (KnowEdit, MQuAKE, CounterFact, answers), bootstrap intervals, and the text
generation the metrics need."""
