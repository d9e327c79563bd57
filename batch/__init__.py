"""The batch room: job specs, prompt rendering, the vLLM engine, the Parquet prediction cache."""
