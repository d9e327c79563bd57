"""What a job says: its TOML file read and checked once (`job.load_spec`), with the
typed settings, candidates, prompts (in a bounded sandbox), recipes and Ray layout it
holds. Nothing here runs anything."""
