"""The course's hyperparameter work as commands: ``tune`` (an Optuna study over the distributed
training) and ``lr-find`` (the learning-rate range test)."""
