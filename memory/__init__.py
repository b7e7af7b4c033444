"""System of record: facts, provenance, validity, edit ledger, evidence-pool state (SQLite)."""
