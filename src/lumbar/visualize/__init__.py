"""Figures people look at: study montages (and, later, charts, ROI grids, heat maps)."""
