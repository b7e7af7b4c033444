"""Code kept frozen for same-run comparisons against what kedit does now (never used by kedit)."""
