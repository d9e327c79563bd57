"""The cache read the way applications call a model: OpenAI's `/v1/completions` and
`/v1/chat/completions` answered from cached predictions, and what the cache could not
answer kept as the next run's work.

`asked` reads a request body as a batch run reads the same body in an OpenAI batch
line (batch.run.openai_batch), so that both give one content key (batch.run.keys);
`served` says which models and adapters the cache answers for, with the identities
their runs recorded; `answers` shapes a cached record as OpenAI's response (whole, or
as server-sent events); `misses` owns `predictions/misses.db`, the requests that
were not cached; `misses_jobs` turns them into batch jobs for the runner; `reading`
ties these together for the HTTP server.

This room sits above `batch.run` (it keys requests with the run's own code and hands
misses to the runner) and beside `batch.score`.
"""
