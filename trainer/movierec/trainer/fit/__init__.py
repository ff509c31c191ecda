"""Training, one trainer per way a model family is trained (`Recommender.trained_by`):

  gradient     `gradient.GradientTrainer`: the epoch loop (autoencoders, I-AutoRec, Mult-VAE/DAE)
  closed_form  `closed_form.ClosedFormTrainer`: EASE, kNN-baseline, most-popular solved from the ratings
  sampler      `sampler.SamplerTrainer`: BPMF's Gibbs sampler
  ensemble     `ensemble.EnsembleTrainer`: fit the members, blend them on validation, refit

`registry.fit` builds a model from its config and fits it with its family's trainer.
"""
