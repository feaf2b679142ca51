"""Prefect flows and the ``corpus2vec`` CLI: orchestration only, no heavy compute."""
