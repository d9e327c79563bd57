"""From curated data to a cheaper specialist: `almanac train` (a LoRA adapter trained
with TRL's SFTTrainer and PEFT on a curated set, written into the home and registered
in the catalog with its lineage) and `almanac distill` (a teacher job's answers →
curate → train → the student measured against its teacher and its base on rows it
never trained on).

The top of the batch rooms: it builds on the data room (curate), the score room and
the runner. torch, transformers, TRL, PEFT and datasets are imported by `trainer`
alone, and only when something is to be trained: a rerun that reuses an adapter, a
dry run and every bad input are answered without them.
"""
