"""Training: data preparation, PK sampling, triplet mining and loss, the trainer, export."""
