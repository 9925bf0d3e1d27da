"""One module per paper result; each writes CSV/JSON, PNG plots and a markdown report under results/."""
