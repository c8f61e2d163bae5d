"""cpbench analysis: loads run folders (load), draws the DESIGN.md plots (plots), overlays the
published numbers of analysis/reference/ (reference) and writes a run's HTML page (report)."""
