"""Comparing models: battles and ratings (Bradley–Terry, bootstrap, Elo), concurrent streams, batch evaluation with reference metrics and an LLM judge."""
