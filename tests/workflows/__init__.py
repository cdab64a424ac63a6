"""Tests of whole commands and of the repository as a whole: end-to-end workflows (Kaggle, grey models),
multi-process training, preemption, reproducibility, config composition, the import layers."""
