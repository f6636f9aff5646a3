"""Reports from stored results: figures, tables, Jinja2 templates, and the tables kept in README and docs.

    from zo2bench.report.render import render
    render("results", "reports")          # index and one page per series, HTML and Markdown
"""
