"""Comparing models: ratings from pairwise battles (Bradley–Terry with bootstrap intervals, online Elo)."""
