"""A trained model teaching new training data: pseudo-labels for the points faces lack, kept with the
teacher's own predictions for distillation (`pseudo_label`; `python -m data pseudo-label`)."""

#: A face is dropped when its annotated points lie on average farther than this many inter-ocular
#: distances from the teacher's prediction of them (the CLI's and `pseudo_label_split`'s default).
DROP_THRESHOLD = 0.1

__all__ = ["DROP_THRESHOLD"]
