"""Conversion jobs: plan (names, sizes), the one orchestrator (convert_many), the quality report."""
