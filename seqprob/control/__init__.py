"""Tractable control: constraints as DFAs over tokens, HMM-guided constrained decoding
(GeLaTo/Ctrl-G) and attribute control by expected attribute probability (TRACE)."""
