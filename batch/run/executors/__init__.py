"""Where a run's missing rows are generated. `base.Executor` is the one interface
(prepare / generate / close); `local.LocalExecutor` runs vLLM in this process and
`ray.RayExecutor` on a Ray cluster. The runner holds an `Executor` and never asks
which kind."""
