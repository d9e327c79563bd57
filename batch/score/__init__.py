"""Scores: each cached prediction measured against a reference, and candidates compared.

`settings` reads a job's [score] table, `metrics` holds the comparisons, `judge`
scores with another model through a derived job, `store` owns `predictions/scores.db`,
`scoring` ties them together for a job (`score_run`), `stats` has the bootstrap and
the Pareto front, and `compare` builds the per-candidate table of quality and cost.

This room sits above `batch.run`: it reads a job's input rows and runs judge jobs
through the runner, so the runner never imports it; the front door calls
`score_run` after a run.
"""
