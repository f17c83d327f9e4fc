"""Deep state-space layers (S4D, S4, Mamba, SpaceTime's companion SSM) and models."""

from seqprob.ssm.layers import S4, S4D, CompanionSSM
from seqprob.ssm.lm import MambaLM
from seqprob.ssm.mamba import Mamba
from seqprob.ssm.mamba_ssm_compat import MambaSimple, mamba_lm_from_state_dict
from seqprob.ssm.spacetime import SpaceTime
from seqprob.ssm.tokenizer import ByteTokenizer

__all__ = ["S4", "S4D", "ByteTokenizer", "CompanionSSM", "Mamba", "MambaLM", "MambaSimple",
           "SpaceTime", "mamba_lm_from_state_dict"]
