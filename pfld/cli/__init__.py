"""Command-line front ends that assemble the layers below: `python -m data` (`data`: prepare a data set,
or pseudo-label one with a trained model) and `python predict.py` (`predict`). Nothing in pfld imports
them."""
