"""Reports: run-folder figures (``plots.plot_run``) and summaries."""
