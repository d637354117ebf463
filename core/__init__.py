"""The shared core every other package stands on: data schema and loaders, recipe parsing, TREC/BEIR/rank_llm
I/O, the append-only JSONL log, model loading, generation backends and the tiny models of tests and demos."""
