"""Reports: the summary, tables, figures, HTML, history and nightly comparisons, their statistics."""
