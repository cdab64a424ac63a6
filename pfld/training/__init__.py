"""The training run: `train(cfg)` (`loop`), the LightningModule (`module`), and the run's machinery:
config checks before anything starts (`config_checks`), warm starts (`warm_start`), the learning-rate
schedule (`schedules`), non-finite losses (`finite_loss`), callbacks and tracking (`callbacks`,
`tracking`), preemption and exact resume (`preemption`), sweeps and ablation studies (`sweep`,
`ablation`)."""

from pfld.training.loop import mean_shape_nme, model_spec, train

__all__ = ["mean_shape_nme", "model_spec", "train"]
