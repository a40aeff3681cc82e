"""diffseg: a reproducible pipeline for localized, multi-turn AI-edit detection."""
