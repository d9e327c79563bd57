"""From cached predictions to training data: chained jobs (`chains`, with their
lineage in `lineage`), and curated fine-tuning datasets (`curate`). It sits above the
score room (curate filters on scores) and the run room (a chain's rows are planned by
the runner, which the front door hands an `UpstreamReader`)."""
