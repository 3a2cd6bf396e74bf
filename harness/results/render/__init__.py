"""Renderers: stored runs and comparisons as text tables (`summary`), a
comparison as text, Markdown or JSON (`comparison`), HTML pages with plots
(`html`), JUnit XML for CI (`junit`), change points (`changes`) and the history
report (`history`: its page and a page per run in `history_page`, a series'
trend figure in `trend`).
They format what `harness.results` computed and compute nothing themselves."""
