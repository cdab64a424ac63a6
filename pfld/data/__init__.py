"""Faces in: readers (`readers`) -> records (`records`) -> crops (`crop`, `cache`) -> prepared splits on
disk (`prepare`, `store`) -> sources of a split (`sources`) -> augmented samples (`transforms`, `dataset`)
-> batches (`datamodule`). Landmark schemes and mappings between them live in `schemes`; head-pose
geometry in `geometry` and `attributes`; faces of other schemes in `mixed`."""
