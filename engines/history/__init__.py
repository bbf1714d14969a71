"""History: one timeline over everything the studio recorded, lineage of models, run comparison, archive export/import."""
