"""Deep state-space layers (S4D, S4, Mamba, SpaceTime's companion SSM) and models."""

from seqprob.ssm.layers import S4, S4D, CompanionSSM

__all__ = ["S4", "S4D", "CompanionSSM"]
