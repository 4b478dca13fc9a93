"""Training: software (with noise regularisation), detector retraining, on-chip."""
