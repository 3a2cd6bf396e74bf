"""Renderers: stored runs and comparisons as text tables (`summary`), a
comparison as text, Markdown or JSON (`comparison`), HTML pages with plots
(`html`), JUnit XML for CI (`junit`), the history report (`history`) and change
points (`changes`).
They format what `harness.results` computed and compute nothing themselves."""
