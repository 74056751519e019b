"""The TFX Trainer's user module (module.py): its run_fn calls zoo.training.train, the CLI's training core."""
