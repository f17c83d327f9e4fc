"""Hidden Markov models: exact inference, EM (full, stepwise, distributed), estimators,
distillation from a language model and its compact artifact file."""

from seqprob.hmm.artifact import load_artifact, load_hmm, save_artifact
from seqprob.hmm.distill import DistillResult, distill
from seqprob.hmm.emissions import CategoricalEmission, GaussianEmission, PoissonEmission
from seqprob.hmm.estimators import CategoricalHMM, GaussianHMM, PoissonHMM
from seqprob.hmm.model import HMM, HMMState

__all__ = ["HMM", "CategoricalEmission", "CategoricalHMM", "DistillResult", "GaussianEmission",
           "GaussianHMM", "HMMState", "PoissonEmission", "PoissonHMM", "distill", "load_artifact",
           "load_hmm", "save_artifact"]
