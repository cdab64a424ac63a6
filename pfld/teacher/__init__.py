"""A trained model teaching new training data: pseudo-labels for the points faces lack, kept with the
teacher's own predictions for distillation (`pseudo_label`; `python -m data pseudo-label`)."""
