"""The compare step: mean ± std over seeds per candidate, the best run, the gate's verdict, and
the comparison table (Markdown, HTML). May import `components.common` and `components.spec`."""
