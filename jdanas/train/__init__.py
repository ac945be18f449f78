"""Training: recipes, device-side batching and the population engine."""
from jdanas.train.population import (TRAIN_STRATEGIES, Group, PopulationResult, PopulationTrainer, StudentState,
                                     TrainingPrograms, train_population)
from jdanas.train.recipe import Recipe

__all__ = ["TRAIN_STRATEGIES", "Group", "PopulationResult", "PopulationTrainer", "Recipe", "StudentState",
           "TrainingPrograms", "train_population"]
