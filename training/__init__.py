"""Fine-tune BERT-family classifiers: `python -m training --help`."""
