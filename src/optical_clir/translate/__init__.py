"""Neural machine translation for the translate-then-search baseline.

- `queries.translate_queries`: translate a queries TSV with any Hugging Face seq2seq model.
- `train_small_nmt.train_small_nmt`: train a small NMT model where no public one exists.
- `quality.translation_quality_tables`: sacrebleu BLEU / chrF / chrF++ tables.

Submodules are not imported here, so `quality` can be used without loading torch.
"""
