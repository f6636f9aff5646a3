"""Tasks for the convergence series: a synthetic language, its three tasks, real-data loaders, evaluation.

    language.py   the language: lexicon, reviews with sentiment and negation, fact passages, word lists, corpus
    synthetic.py  the three tasks generated from a seed, split, saved with their tokenizer in the cache
    tokenizer.py  the language's word-level tokenizer (`tokenizers`), or any tokenizer.json
    examples.py   Example (prompt, target, candidates, answers), k-shot sets, the primary metric per task
    loaders.py    SST-2 and SQuAD layouts of Hugging Face `datasets` files, JSON lines, prompt templates
    encode.py     examples into engine batches (the prompt unscored, the target scored)
    evaluate.py   accuracy by scoring candidates, exact match / F1 / per-token accuracy by decoding
    metrics.py    the metrics
    cache.py      the cache folder ($ZO2BENCH_CACHE or ~/.cache/zo2bench) and digest-named entries
"""
