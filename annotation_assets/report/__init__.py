"""The dataset quality report of a task: figures gathered from the warehouse, rendered as one
self-contained HTML page (inline CSS, PNG plots as data URIs, nothing fetched from a network).

`queries.collect_report_data` runs the queries, `figures.plot_pngs` draws the plots,
`render.render_report` fills the page's template (templates/quality_report.html.j2), and
`markdown.key_plots_markdown` gives small markdown versions of the key plots for the Dagster
UI.
"""
