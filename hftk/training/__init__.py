"""One training run: prepare, TrainingArguments, the Trainer, train(), the output folder, check."""
